"""Read and validate the catalog at one commit straight from git objects (no checkout).

The same pure parsing, schema and rule functions as `deepmarket validate` run here; only the
facts they need (bytes of a file, kind and size of a referenced path) come from the commit's
trees instead of the disk. So a problem reads exactly as the validator prints it
(`file:line:col: field: message`), with paths relative to the repository root.

Nothing is written anywhere: a broken commit can be read, judged and forgotten.
"""

from __future__ import annotations

import gc
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

from deepmarket.catalog.icons import icon_is_safe
from deepmarket.catalog.loader import (
    CATALOG_DIR,
    INDEX_FILE,
    INDEX_LIMITS,
    MODULE_FILE,
    MODULE_LIMITS,
    sort_problems,
)
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

TREE = pygit2.enums.FileMode.TREE
LINK = pygit2.enums.FileMode.LINK
COMMIT = pygit2.enums.FileMode.COMMIT  # a submodule: a pointer into another repository
MAX_LINK_HOPS = 8


@dataclass(frozen=True)
class GitCatalog:
    """A catalog read at one commit: the usable modules and every problem found."""

    commit: str  # 40-hex commit id
    catalog: Catalog
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        """The problems that make the catalog unusable (warnings do not, as in `load_catalog`)."""
        return [p for p in self.problems if p.is_error]

    @property
    def valid(self) -> bool:
        return not self.errors


def _join(base: str, name: str) -> str:
    return name if base in ("", ".") else f"{base}/{name}"


# (tree id, directory path) → that directory's tree. libgit2's lookup by path re-reads every
# tree on the way (~5 ms in a 1,000-entry catalog/); by name it is ~80x cheaper, and a tree id
# names its content for good, so the memo never goes stale.
_DIRS: dict[tuple[str, str], pygit2.Tree | None] = {}
_DIRS_MAX = 200_000


def _entry(tree: pygit2.Tree, rel: str) -> pygit2.Object | None:
    """The object at `rel` inside `tree` without following links, or None when absent."""
    if not rel:
        return tree
    parent, _, name = rel.rpartition("/")
    holder = _dir(tree, parent) if parent else tree
    if not isinstance(holder, pygit2.Tree) or name not in holder:
        return None
    return holder[name]


def _dir(tree: pygit2.Tree, rel: str) -> pygit2.Object | None:
    key = (str(tree.id), rel)
    if key in _DIRS:
        return _DIRS[key]
    found = _entry(tree, rel)
    if len(_DIRS) >= _DIRS_MAX:
        _DIRS.clear()
    _DIRS[key] = found if isinstance(found, pygit2.Tree) else None
    return found


def _mode(tree: pygit2.Tree, rel: str) -> int | None:
    parent, _, name = rel.rpartition("/")
    holder = _dir(tree, parent) if parent else tree
    if not isinstance(holder, pygit2.Tree) or name not in holder:
        return None
    return holder[name].filemode


def _read_blob(tree: pygit2.Tree, rel: str, display: str, limit: int) -> bytes | Problem:
    """The blob at `rel`, never more than `limit` bytes, or why it cannot be used."""
    mode = _mode(tree, rel)
    if mode is None:
        return Problem(display, None, None, "", "file does not exist")
    if mode == LINK:
        return Problem(display, None, None, "", "is a symlink; catalog files must be regular files")
    obj = _entry(tree, rel)
    if not isinstance(obj, pygit2.Blob):
        return Problem(display, None, None, "", "is not a regular file")
    if obj.size > limit:
        return Problem(
            display, None, None, "", f"file is larger than the {human_size(limit)} limit"
        )
    return obj.data


def _parse(tree: pygit2.Tree, rel: str, display: str, limits: Limits, schema: str) -> ParsedYaml:
    raw = _read_blob(tree, rel, display, limits.max_bytes)
    if isinstance(raw, Problem):
        return ParsedYaml(display, problems=[raw])
    parsed = parse_yaml(raw, display, limits)
    if parsed.data is not None and not isinstance(parsed.data, dict):
        parsed.problems.append(Problem(display, 1, 1, "", "expected a mapping of keys to values"))
        parsed.data = None
    if parsed.data is not None:
        parsed.problems.extend(problems_from_schema(parsed, schema))
    return parsed


def _resolve(tree: pygit2.Tree, module_dir: str, rel: str) -> tuple[str, pygit2.Object] | str:
    """Follow `module_dir/rel` through symlinks inside the commit; a kind word when it fails.

    A link is resolved lexically, as the disk would resolve it in a checkout: it may point
    anywhere inside the module's directory, never out of it.
    """
    path = posixpath.normpath(f"{module_dir}/{rel}")
    for _ in range(MAX_LINK_HOPS):
        parts = path.split("/")
        walked = ""
        for i, part in enumerate(parts):
            walked = _join(walked, part)
            mode = _mode(tree, walked)
            if mode is None:
                return "missing"
            if mode == LINK:
                blob = _entry(tree, walked)
                target = blob.data.decode("utf-8", "replace") if blob is not None else ""
                rest = "/".join(parts[i + 1 :])
                joined = posixpath.join(posixpath.dirname(walked), target, rest)
                path = posixpath.normpath(joined)
                if target.startswith("/") or not path.startswith(module_dir + "/"):
                    return "escapes"
                break
            if i < len(parts) - 1 and mode != TREE:
                return "missing"  # a file used as a directory (ENOTDIR on disk)
        else:
            obj = _entry(tree, path)
            return (path, obj) if obj is not None else "missing"
    return "not-a-file"  # a loop of links (ELOOP on disk)


def _facts(tree: pygit2.Tree, module_dir: str, rels: list[str]) -> dict[str, FileFact]:
    facts: dict[str, FileFact] = {}
    for rel in rels:
        if lexical_path_problem(rel):
            continue
        found = _resolve(tree, module_dir, rel)
        if isinstance(found, str):
            facts[rel] = FileFact(found)
            continue
        _, obj = found
        if not isinstance(obj, pygit2.Blob):  # a directory or a submodule
            facts[rel] = FileFact("not-a-file")
            continue
        active = False
        if rel.lower().endswith(".svg") and obj.size <= ICON_MAX:
            active = not icon_is_safe(rel, obj.data)
        facts[rel] = FileFact("file", obj.size, active)
    return facts


def _module(
    tree: pygit2.Tree, parsed: ParsedYaml, module_dir: str, deploy: bool
) -> tuple[Module, list[Problem]]:
    data: dict[str, Any] = parsed.data
    problems: list[Problem] = []
    readme = None
    if isinstance(data.get("readme"), str) and not lexical_path_problem(data["readme"]):
        found = _resolve(tree, module_dir, data["readme"])
        if not isinstance(found, str) and isinstance(found[1], pygit2.Blob):
            try:
                readme = found[1].data.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(
                    parsed.problem(("readme",), f"{data['readme']!r} is not UTF-8 text")
                )
    icon_name = (
        data["icon"]
        if isinstance(data.get("icon"), str)
        else _implicit_icon(tree, module_dir, data)
    )
    icon = Path(module_dir, icon_name) if icon_name else None
    module = Module(
        id=data["id"], data=data, dir=Path(module_dir), deploy=deploy, readme=readme, icon=icon
    )
    return module, problems


# (module.yml display path, its directory's tree id) → the parsed, checked module.yml. Every
# rule over one module looks only inside its directory, so an unchanged tree id means unchanged
# results: a merge that touches one module re-reads one module, not the whole catalog.
ModuleCache = dict[tuple[str, str], ParsedYaml]


def _implicit_icon(root: pygit2.Tree, rel_dir: str, data: dict[str, Any]) -> str | None:
    """icon.svg or icon.png beside module.yml, used when there is no `icon:` key."""
    for name in icon_candidates(data):
        if _mode(root, f"{rel_dir}/{name}") is not None:
            return name
    return None


def _check_module(root: pygit2.Tree, rel_dir: str, name: str, display: str) -> ParsedYaml:
    """One module.yml: syntax, schema, and the rules over it and the files it references
    (the loader's `check_module_file`, over git objects)."""
    parsed = _parse(root, f"{rel_dir}/{MODULE_FILE}", display, MODULE_LIMITS, MODULE)
    if isinstance(parsed.data, dict):
        icon = _implicit_icon(root, rel_dir, parsed.data)
        refs = [rel for _, rel, _, _ in referenced_files(parsed.data, icon)]
        flagged = frozenset(p.path for p in parsed.problems)
        facts = _facts(root, rel_dir, refs)
        parsed.problems.extend(module_rules(parsed, name, facts, flagged, icon))
        parsed.problems.extend(placeholder_problems(parsed, parsed.problems))
        readme = parsed.data.get("readme")
        fact = facts.get(readme) if isinstance(readme, str) else None
        if fact is not None and fact.kind == "file" and fact.size <= README_MAX:
            found = _resolve(root, rel_dir, readme)
            try:
                text = found[1].data.decode("utf-8") if not isinstance(found, str) else ""
            except UnicodeDecodeError:
                text = ""  # reported when the module is loaded
            where = f"{display.rsplit('/', 1)[0]}/{readme}"
            parsed.problems.extend(readme_problems(text, where))
    return parsed


def read_catalog(
    repo: pygit2.Repository, commit: str, path: str = ".", cache: ModuleCache | None = None
) -> GitCatalog:
    """The catalog rooted at `path` in `commit`, validated (see the module docstring).

    `cache`, kept by the caller between commits, skips module directories already checked;
    afterwards it holds exactly this commit's directories.
    """
    paused = gc.isenabled()
    gc.disable()  # as the disk loader: many small acyclic objects that all stay alive
    try:
        return _read(repo, commit, path, {} if cache is None else cache)
    finally:
        if paused:
            gc.enable()


def _read(repo: pygit2.Repository, commit: str, path: str, cache: ModuleCache) -> GitCatalog:
    obj = repo.revparse_single(commit).peel(pygit2.Commit)
    commit_id = str(obj.id)
    root_path = posixpath.normpath(path.strip("/") or ".")
    base = "" if root_path == "." else root_path
    root = _entry(obj.tree, base)
    if not isinstance(root, pygit2.Tree):
        where = base or "."
        problem = Problem(f"{where}/", None, None, "", "directory does not exist at this commit")
        return GitCatalog(commit_id, Catalog(root=Path(where)), [problem])

    def display(rel: str) -> str:
        return _join(base, rel)

    problems: list[Problem] = []
    index_mode = _mode(root, INDEX_FILE)
    catalog_mode = _mode(root, CATALOG_DIR)
    if index_mode is None and catalog_mode != TREE:
        problem = Problem(
            display(INDEX_FILE), None, None, "",
            f"neither {INDEX_FILE} nor {CATALOG_DIR}/ exists here; "
            "is spec.path the catalog's root?",
        )  # fmt: skip
        return GitCatalog(commit_id, Catalog(root=Path(base or ".")), [problem])
    index = _parse(root, INDEX_FILE, display(INDEX_FILE), INDEX_LIMITS, INDEX)
    problems.extend(index.problems)
    entries, dup_problems = index_entries(index)
    problems.extend(dup_problems)

    module_dirs: dict[str, str] = {}
    parsed_modules: dict[str, ParsedYaml] = {}
    used: set[tuple[str, str]] = set()
    catalog_tree = _entry(root, CATALOG_DIR) if catalog_mode == TREE else None
    if isinstance(catalog_tree, pygit2.Tree):
        for entry in sorted(catalog_tree, key=lambda e: e.name):
            name = entry.name
            if name.startswith("."):
                continue
            dir_display = display(f"{CATALOG_DIR}/{name}")
            if entry.filemode == LINK:
                module_dirs[name] = dir_display
                problems.append(
                    Problem(dir_display, None, None, "",
                            "is a symlink; module directories must be real directories")
                )  # fmt: skip
                continue
            if entry.filemode != TREE:
                continue  # stray files (a README about the catalog) are not modules
            module_display = f"{dir_display}/{MODULE_FILE}"
            module_dirs[name] = module_display
            rel_dir = f"{CATALOG_DIR}/{name}"
            key = (module_display, str(entry.id))
            used.add(key)
            parsed = cache.get(key)
            if parsed is None:
                parsed = _check_module(root, rel_dir, name, module_display)
                cache[key] = parsed
            problems.extend(parsed.problems)
            if isinstance(parsed.data, dict) and isinstance(parsed.data.get("id"), str):
                parsed_modules[name] = parsed
    elif index_mode is not None:
        problems.append(
            Problem(display(f"{CATALOG_DIR}/"), None, None, "", "directory does not exist")
        )

    problems.extend(catalog_rules(index, entries, module_dirs, parsed_modules))
    for key in [k for k in cache if k not in used]:
        del cache[key]

    catalog = Catalog(root=Path(base or "."))
    by_id: dict[str, IndexEntry] = {e.id: e for e in entries}
    for entry in entries:
        parsed = parsed_modules.get(entry.id)
        if parsed is None:
            continue
        module, extra = _module(root, parsed, f"{CATALOG_DIR}/{entry.id}", by_id[entry.id].deploy)
        problems.extend(extra)
        catalog.modules.append(module)
    return GitCatalog(commit_id, catalog, sort_problems(problems))
