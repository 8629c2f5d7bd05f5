"""The I/O around `importers`: find metadata files, read them (JSON as JSON, YAML as YAML),
learn what the checkout around each says (LICENSE, entry points), convert, and validate the
result in a scratch catalog before anything is written to the real one."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepmarket.catalog import importers, importrepair
from deepmarket.errors import UsageError, UserError

V2_NAMES = ("ai4-metadata.yml", "ai4-metadata.yaml", "ai4-metadata.json")
V1_NAMES = ("metadata.json",)
LICENCE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "COPYING")
MAX_BYTES = 1024 * 1024


@dataclass
class Outcome:
    """One source file's import: `result` is valid, draft, invalid, refused or clash."""

    source: Path
    result: str
    id: str = ""
    text: str = ""  # module.yml as it would be written
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why it is not valid (one per line)


def find_sources(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Metadata files named or found under directories. In a directory that holds both an
    AI4OS v2 file and a DEEP v1 metadata.json (the migration left many so) the v2 file is
    the module's description; the v1 one is skipped with a note."""
    found: list[Path] = []
    notes: list[str] = []
    for path in paths:
        if path.is_dir():
            candidates = sorted(
                p for name in (*V2_NAMES, *V1_NAMES) for p in path.rglob(name) if p.is_file()
            )
            if not candidates:
                raise UsageError(
                    f"{path}: no metadata file found (looked for "
                    f"{', '.join((*V2_NAMES, *V1_NAMES))})"
                )
            for candidate in candidates:
                if candidate.name in V1_NAMES and any(
                    (candidate.parent / name).is_file() for name in V2_NAMES
                ):
                    notes.append(
                        f"{candidate}: skipped; the AI4OS v2 file beside it describes the "
                        "same module"
                    )
                    continue
                found.append(candidate)
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{path}: no such file or directory")
    return list(dict.fromkeys(found)), notes


def read_metadata(path: Path, notes: list[str] | None = None) -> Any:
    """The file's data. JSON is read as JSON (DEEP files are indented with tabs, which YAML
    forbids); a syntax error is one line with its line and column."""
    from deepmarket.catalog.loader import read_capped
    from deepmarket.catalog.model import Problem
    from deepmarket.catalog.yamlsource import Limits, parse_yaml

    notes = notes if notes is not None else []
    raw = read_capped(path, str(path), MAX_BYTES)
    if isinstance(raw, Problem):
        raise UserError(str(raw))
    if path.suffix.lower() == ".json":
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        if not text.strip():
            raise UserError(f"{path}: the file is empty")
        try:
            data, repairs = importrepair.loads_json(text, _no_duplicates(path))
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}; fix the file there"
                f"{_json_hint(exc)}"
            ) from None
        notes.extend(f"{path.name} {note}" for note in repairs)
        return data
    limits = Limits(max_bytes=MAX_BYTES, max_depth=32, max_nodes=50_000)
    parsed = parse_yaml(raw, str(path), limits)
    first_error = None
    for _ in range(len(importrepair.TEXT_KEYS)):
        syntax = [p for p in parsed.problems if "duplicate key" not in p.message]
        if not syntax or syntax[0].line is None or parsed.data is not None:
            break
        first_error = first_error or syntax[0]
        # Only a title/summary/description YAML cannot read is repaired, as written.
        try:
            source = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            break
        repaired = importrepair.repair_yaml_text(source, syntax[0].line)
        if repaired is None:
            break
        text, note = repaired
        notes.append(f"{path.name} {note}")
        raw = text.encode("utf-8")
        parsed = parse_yaml(raw, str(path), limits)
    if parsed.problems:
        duplicates = [p for p in parsed.problems if "duplicate key" in p.message]
        if len(duplicates) == len(parsed.problems):
            return _last_one_wins(raw, duplicates, notes)
        raise UserError(str(parsed.problems[0]))
    return parsed.data


def _json_hint(exc: json.JSONDecodeError) -> str:
    """What usually causes the error json reports (its own message is terse)."""
    if exc.msg == "Expecting ',' delimiter":
        return " (a '\"' inside a text must be written \\\", and values are separated by ',')"
    if exc.msg.startswith("Expecting property name"):
        return " (keys are written in double quotes)"
    if exc.msg == "Invalid control character at":
        return " (a line break inside a text must be written \\n)"
    return ""


def _last_one_wins(raw: bytes, duplicates: list[Any], notes: list[str]) -> Any:
    """A key given twice: AI4OS (PyYAML) keeps the last value, so its marketplace shows that
    one; read it the same way and say so, rather than refuse a file AI4OS accepts."""
    import yaml

    data = yaml.safe_load(raw.decode("utf-8-sig"))
    for problem in duplicates:
        notes.append(
            f"{problem.path or 'a key'}: appears twice (line {problem.line}); the last value was "
            "kept, as AI4OS reads it; delete the other one in the source"
        )
    return data


def _no_duplicates(path: Path) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise UserError(f"{path}: invalid JSON: key {key!r} appears twice in one object")
            out[key] = value
        return out

    return hook


def context_for(path: Path, meta: Any) -> importers.Context:
    """What the directory holding the metadata file says: its LICENSE, the entry point its
    packaging declares, the licence of a v1 metadata.json left beside a v2 file."""
    from deepmarket.modules.targets import declared_models

    folder = path.parent
    licence_text, licence_file = None, "LICENSE"
    for name in LICENCE_FILES:
        candidate = folder / name
        if candidate.is_file():
            try:
                licence_text = candidate.read_bytes()[:65536].decode("utf-8", "replace")
                licence_file = name
            except OSError:
                pass
            break
    sibling = None
    v1 = folder / "metadata.json"
    if path.name in V2_NAMES and v1.is_file():
        try:
            old = json.loads(v1.read_text(encoding="utf-8-sig"))
            if isinstance(old, dict) and isinstance(old.get("license"), str):
                sibling = old["license"]
        except (OSError, ValueError):
            pass
    try:
        names, where = declared_models(folder)
    except UserError:
        names, where = [], ""
    return importers.Context(
        licence_text=licence_text,
        licence_file=licence_file,
        sibling_licence=sibling,
        entry_points=tuple(names),
        packaging_file=Path(where).name if where.endswith((".toml", ".cfg")) else where,
    )


def check_text(module_id: str, text: str) -> tuple[list[str], list[str]]:
    """Validate module.yml text as catalog/<id>/module.yml of a scratch catalog:
    (errors, warnings)."""
    from deepmarket.catalog.loader import check_module_file

    with tempfile.TemporaryDirectory(prefix="deepmarket-import-") as scratch:
        folder = Path(scratch) / "catalog" / module_id
        folder.mkdir(parents=True)
        (folder / "module.yml").write_text(text, encoding="utf-8")
        display = f"catalog/{module_id}/module.yml"
        parsed = check_module_file(folder / "module.yml", display, module_id)
        errors = [str(p) for p in parsed.problems if p.is_error]
        warnings = [str(p) for p in parsed.problems if not p.is_error]
        return errors, warnings


def clash(root: Path, module_id: str) -> str | None:
    """Why `module_id` cannot be added to the catalog at `root`, or None. A draft left by an
    earlier `--draft` import may be replaced."""
    from deepmarket.catalog.scaffold import index_ids

    index = root / "modules.yml"
    folder = root / "catalog" / module_id
    if is_draft(folder / "module.yml"):
        return None
    if index.is_file():
        try:
            ids = index_ids(index.read_text(encoding="utf-8"))
        except Exception:  # ruamel's errors are many; any of them means "fix it first"
            return f"{index} cannot be read as YAML; fix it first"
        if module_id in ids:
            return f"module {module_id!r} is already listed in {index}; pass --id to choose another"
    if folder.exists() or folder.is_symlink():
        return f"{folder} already exists; pass --id to choose another id"
    return None


def is_draft(module_file: Path) -> bool:
    try:
        head = module_file.read_text(encoding="utf-8")[:200]
    except OSError:
        return False
    return head.startswith("# " + importers.DRAFT_MARK)


def prepare(
    source: Path,
    root: Path,
    *,
    module_id: str | None = None,
    image: str | None = None,
    licence: str | None = None,
    draft: bool = False,
    taken: set[str] | None = None,
) -> Outcome:
    """Convert and validate one file; write nothing. `taken` holds ids claimed by earlier
    files of the same run."""
    try:
        read_notes: list[str] = []
        meta = read_metadata(source, read_notes)
        imported = importers.convert(
            meta,
            module_id=module_id,
            image=image,
            licence=licence,
            context=context_for(source, meta),
        )
    except UserError as exc:
        message = str(exc)
        if not message.startswith(str(source)):
            message = f"{source}: {message}"
        return Outcome(source, "refused", problems=[message])
    from deepmarket.catalog.scaffold import ID_PATTERN

    if len(imported.id) > 63 or not ID_PATTERN.match(imported.id):
        return Outcome(
            source,
            "refused",
            imported.id,
            problems=[
                f"{source}: invalid module id {imported.id!r}: pass --id with a DNS-1035 label "
                "(lowercase letters, digits and '-', starting with a letter)"
            ],
        )
    imported.notes[:0] = read_notes
    text = importers.module_yaml(imported, source.name)
    problems, warnings = check_text(imported.id, text)
    notes = [*imported.notes, *(f"warning (CI refuses it): {w}" for w in warnings)]
    outcome = Outcome(source, "valid", imported.id, text, notes, problems)
    if problems:
        outcome.result = "draft" if draft else "invalid"
        if draft:
            outcome.text = importers.module_yaml(imported, source.name, draft_problems=problems)
    why = clash(root, imported.id)
    if why is None and taken is not None and imported.id in taken:
        why = f"module {imported.id!r} is also the id of another file in this import; pass --id"
    if why:
        outcome.result = "clash"
        outcome.problems = [why, *problems]
    return outcome


def write(root: Path, outcome: Outcome) -> list[Path]:
    """Write catalog/<id>/module.yml and list the id in modules.yml (a replaced draft is
    listed already)."""
    from deepmarket.catalog.scaffold import append_to_index, index_ids

    index = root / "modules.yml"
    text = index.read_text(encoding="utf-8") if index.exists() else ""
    folder = root / "catalog" / outcome.id
    folder.mkdir(parents=True, exist_ok=True)
    module_file = folder / "module.yml"
    module_file.write_text(outcome.text, encoding="utf-8")
    written = [module_file]
    if outcome.id not in index_ids(text):
        index.write_text(append_to_index(text, outcome.id), encoding="utf-8")
        written.append(index)
    return written
