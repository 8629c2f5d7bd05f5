"""Reading a catalog from disk: the thin shell around the pure parsing, schema and rule checks.

Layout of a catalog root: `modules.yml` (the index) and `catalog/<id>/module.yml` (one module
each, with an optional README and icon beside it).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import stat
from pathlib import Path

from deepmarket.catalog.icons import icon_is_safe
from deepmarket.catalog.model import Catalog, Module, Problem
from deepmarket.catalog.rules import (
    ICON_MAX,
    README_MAX,
    FileFact,
    IndexEntry,
    catalog_rules,
    icon_candidates,
    index_entries,
    lexical_path_problem,
    module_rules,
    placeholder_problems,
    readme_problems,
    referenced_files,
)
from deepmarket.catalog.schema import INDEX, MODULE, problems_from_schema
from deepmarket.catalog.yamlsource import Limits, ParsedYaml, human_size, parse_yaml
from deepmarket.errors import UsageError, UserError

INDEX_FILE = "modules.yml"
CATALOG_DIR = "catalog"
MODULE_FILE = "module.yml"
MODULE_LIMITS = Limits(max_bytes=256 * 1024, max_depth=32, max_nodes=20_000)
INDEX_LIMITS = Limits(max_bytes=8 * 1024 * 1024, max_depth=8, max_nodes=1_000_000)


class CatalogInvalid(UserError):
    """The catalog has problems; `.problems` lists every one of them."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        super().__init__(
            f"the catalog has {count} problem{'s' if count != 1 else ''}; first: {problems[0]}"
            + (" (run `deepmarket validate` to see all)" if count > 1 else "")
        )


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """Stable order for reports: by file, then line and column."""
    return sorted(problems, key=lambda p: (p.file, p.line or 0, p.col or 0, p.path, p.message))


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def read_capped(path: Path, display: str, limit: int) -> bytes | Problem:
    """The bytes of a regular file, never more than `limit` read, or why it cannot be used."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return Problem(display, None, None, "", "file does not exist")
    except OSError as exc:
        raise UsageError(f"cannot read {display}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        return Problem(display, None, None, "", "is a symlink; catalog files must be regular files")
    if not stat.S_ISREG(st.st_mode):
        return Problem(display, None, None, "", "is not a regular file")
    if st.st_size > limit:
        return Problem(
            display, None, None, "", f"file is larger than the {human_size(limit)} limit"
        )
    try:
        with path.open("rb") as fh:
            return fh.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {display}: {exc.strerror}") from None


def parse_file(path: Path, display: str, limits: Limits, schema: str) -> ParsedYaml:
    """Read, parse and schema-check one file; problems collected on the result."""
    raw = read_capped(path, display, limits.max_bytes)
    if isinstance(raw, Problem):
        return ParsedYaml(display, problems=[raw])
    parsed = parse_yaml(raw, display, limits)
    if parsed.data is not None and not isinstance(parsed.data, dict):
        parsed.problems.append(Problem(display, 1, 1, "", "expected a mapping of keys to values"))
        parsed.data = None
    if parsed.data is not None:
        parsed.problems.extend(problems_from_schema(parsed, schema))
    return parsed


def file_facts(module_dir: Path, rels: list[str], base: str | None = None) -> dict[str, FileFact]:
    """stat() each referenced path, resolving symlinks, and note those that leave the dir.

    `base` is the module directory's real path when the caller already knows it.
    """
    facts: dict[str, FileFact] = {}
    base = base or os.path.realpath(module_dir)
    for rel in rels:
        if lexical_path_problem(rel):
            continue
        target = os.path.join(module_dir, rel)  # noqa: PTH118 - str paths: 3x cheaper here
        try:
            st = os.lstat(target)
            if "/" in rel or stat.S_ISLNK(st.st_mode):  # a link on the way may lead out
                resolved = os.path.realpath(target)
                if not resolved.startswith(base + os.sep):
                    facts[rel] = FileFact("escapes")
                    continue
                st = os.stat(resolved)  # noqa: PTH116
        except (FileNotFoundError, NotADirectoryError):
            facts[rel] = FileFact("missing")
            continue
        except OSError:
            facts[rel] = FileFact("not-a-file")
            continue
        kind = "file" if stat.S_ISREG(st.st_mode) else "not-a-file"
        active = False
        if kind == "file" and rel.lower().endswith(".svg") and st.st_size <= ICON_MAX:
            with open(target, "rb") as svg:  # noqa: PTH123 - str paths, as above
                active = not icon_is_safe(rel, svg.read())
        facts[rel] = FileFact(kind, st.st_size, active)
    return facts


def implicit_icon(module_dir: Path, data: dict) -> str | None:
    """icon.svg or icon.png beside module.yml, used when there is no `icon:` key."""
    for name in icon_candidates(data):
        if os.path.lexists(os.path.join(module_dir, name)):  # noqa: PTH118
            return name
    return None


def check_module_file(
    path: Path, display: str, dir_name: str | None, base: str | None = None
) -> ParsedYaml:
    """One module.yml: syntax, schema, and the rules over it and the files it references."""
    parsed = parse_file(path, display, MODULE_LIMITS, MODULE)
    if isinstance(parsed.data, dict):
        icon = implicit_icon(path.parent, parsed.data)
        refs = [rel for _, rel, _, _ in referenced_files(parsed.data, icon)]
        flagged = frozenset(p.path for p in parsed.problems)
        facts = file_facts(path.parent, refs, base)
        parsed.problems.extend(module_rules(parsed, dir_name, facts, flagged, icon))
        parsed.problems.extend(placeholder_problems(parsed, parsed.problems))
        readme = parsed.data.get("readme")
        fact = facts.get(readme) if isinstance(readme, str) else None
        if fact is not None and fact.kind == "file" and fact.size <= README_MAX:
            try:
                text = (path.parent / readme).read_bytes().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                text = ""  # reported when the module is loaded
            where = f"{display.rsplit('/', 1)[0]}/{readme}" if "/" in display else readme
            parsed.problems.extend(readme_problems(text, where))
    return parsed


def _module_from(
    parsed: ParsedYaml, module_dir: Path, deploy: bool
) -> tuple[Module, list[Problem]]:
    data = parsed.data
    problems: list[Problem] = []
    readme = None
    if isinstance(data.get("readme"), str):
        try:
            readme = (module_dir / data["readme"]).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            problems.append(parsed.problem(("readme",), f"{data['readme']!r} is not UTF-8 text"))
        except PermissionError as exc:
            problems.append(parsed.problem(("readme",), f"cannot be read: {exc.strerror}"))
        except OSError:
            pass  # missing, a directory, a loop: module_rules reported it from its stat facts
    icon_name = (
        data["icon"] if isinstance(data.get("icon"), str) else implicit_icon(module_dir, data)
    )
    icon = module_dir / icon_name if icon_name else None
    module = Module(
        id=data["id"], data=data, dir=module_dir, deploy=deploy, readme=readme, icon=icon
    )
    return module, problems


def scan_catalog(root: Path) -> tuple[Catalog, list[Problem]]:
    """The catalog (the modules good enough to use) and every problem found on the way."""
    # Parsing allocates millions of small, acyclic objects that all stay alive; the cyclic
    # collector would re-walk them over and over (time growing faster than the catalog).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _scan(Path(root))
    finally:
        if paused:
            gc.enable()


def _scan(root: Path) -> tuple[Catalog, list[Problem]]:
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"catalog root {root} is not a directory")
    index_path = root / INDEX_FILE
    catalog_dir = root / CATALOG_DIR
    if not index_path.exists() and not catalog_dir.is_dir():
        raise UsageError(
            f"{root} is not a catalog root (no {INDEX_FILE}, no {CATALOG_DIR}/); "
            "run in the repository root or pass --root"
        )
    problems: list[Problem] = []
    index = parse_file(index_path, INDEX_FILE, INDEX_LIMITS, INDEX)
    problems.extend(index.problems)
    entries, dup_problems = index_entries(index)
    problems.extend(dup_problems)

    module_dirs: dict[str, str] = {}
    parsed_modules: dict[str, ParsedYaml] = {}
    if catalog_dir.is_dir():
        catalog_real = os.path.realpath(catalog_dir)  # once, not per module
        for entry in sorted(os.scandir(catalog_dir), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            display = f"{CATALOG_DIR}/{entry.name}"
            if entry.is_symlink():
                module_dirs[entry.name] = display
                problems.append(
                    Problem(
                        display,
                        None,
                        None,
                        "",
                        "is a symlink; module directories must be real directories",
                    )
                )
                continue
            if not entry.is_dir():
                continue  # stray files (a README about the catalog) are not modules
            module_display = f"{display}/{MODULE_FILE}"
            module_dirs[entry.name] = module_display
            parsed = check_module_file(
                Path(entry.path) / MODULE_FILE,
                module_display,
                entry.name,
                os.path.join(catalog_real, entry.name),  # noqa: PTH118 - no symlink: real
            )
            problems.extend(parsed.problems)
            if isinstance(parsed.data, dict) and isinstance(parsed.data.get("id"), str):
                parsed_modules[entry.name] = parsed
    elif index_path.exists():
        problems.append(Problem(f"{CATALOG_DIR}/", None, None, "", "directory does not exist"))

    problems.extend(catalog_rules(index, entries, module_dirs, parsed_modules))

    catalog = Catalog(root=root)
    by_id: dict[str, IndexEntry] = {e.id: e for e in entries}
    for entry in entries:
        parsed = parsed_modules.get(entry.id)
        if parsed is None:
            continue
        module, extra = _module_from(parsed, catalog_dir / entry.id, by_id[entry.id].deploy)
        problems.extend(extra)
        catalog.modules.append(module)
    return catalog, sort_problems(problems)


def validate_catalog(root: Path) -> list[Problem]:
    """Every problem of the catalog at `root`, warnings included (empty when all is well)."""
    return scan_catalog(Path(root))[1]


def load_catalog(root: Path) -> Catalog:
    """The catalog at `root` in marketplace order; raises `CatalogInvalid` listing every problem."""
    catalog, problems = scan_catalog(Path(root))
    errors = [p for p in problems if p.is_error]
    if errors:
        raise CatalogInvalid(errors)
    return catalog


def strict(problems: list[Problem]) -> list[Problem]:
    """Warnings become errors: what CI (`CI=true`) and `validate --strict` apply."""
    return [p if p.is_error else dataclasses.replace(p, severity="error") for p in problems]


def validate_paths(paths: list[Path], root: Path) -> list[Problem]:
    """Check only the given files: module.yml files (or their directories) and/or modules.yml.

    Rules that need the whole catalog (both-ways agreement) are left to a full validation.
    """
    root = Path(root)
    problems: list[Problem] = []
    for path in paths:
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            raise UsageError(f"{path} does not exist")
        if path.is_dir() and not path.is_symlink():
            path = path / MODULE_FILE
        display = _display(path.absolute(), root.absolute())
        if path.name == INDEX_FILE:
            index = parse_file(path, display, INDEX_LIMITS, INDEX)
            problems.extend(index.problems)
            problems.extend(index_entries(index)[1])
        else:
            problems.extend(check_module_file(path, display, path.absolute().parent.name).problems)
    return sort_problems(problems)
