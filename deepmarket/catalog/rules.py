"""Rules the schemas cannot express: across fields, across files, against the file system.

Pure functions: parsed documents and facts about files come in, problems come out. The loader
gathers the facts (stat calls) so that these functions never touch the disk.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from deepmarket.catalog.formats import check_date
from deepmarket.catalog.model import Problem
from deepmarket.catalog.placeholders import placeholder_fields, placeholder_lines
from deepmarket.catalog.yamlsource import ParsedYaml, Path_, dotted, human_size

README_MAX = 512 * 1024
ICON_MAX = 1024 * 1024
SAMPLE_MAX = 20 * 1024 * 1024
# Picked up beside module.yml when there is no `icon:` key, in this order of preference.
ICON_NAMES = ("icon.svg", "icon.png")


@dataclass(frozen=True)
class FileFact:
    """What the loader found at a path a module references."""

    kind: str  # "file", "missing", "not-a-file", "escapes" (resolves outside the module dir)
    size: int = 0
    active: bool = False  # an SVG that can run code (see catalog.icons)


@dataclass(frozen=True)
class IndexEntry:
    """One `modules.yml` entry, with where it was written."""

    id: str
    deploy: bool
    index: int  # position in the list (marketplace order)


def icon_candidates(data: Mapping[str, Any]) -> tuple[str, ...]:
    """Names to look for beside module.yml: none when the author chose an icon (or said no)."""
    return () if "icon" in data else ICON_NAMES


def referenced_files(
    data: Mapping[str, Any], implicit_icon: str | None = None
) -> list[tuple[Path_, str, int, str]]:
    """Files a module.yml points at: (field path, relative path, size cap, what it is).

    `implicit_icon` is an icon file found beside module.yml when there is no `icon:` key.
    """
    refs: list[tuple[Path_, str, int, str]] = []
    if isinstance(data.get("readme"), str):
        refs.append((("readme",), data["readme"], README_MAX, "README"))
    if isinstance(data.get("icon"), str):
        refs.append((("icon",), data["icon"], ICON_MAX, "icon"))
    elif implicit_icon and "icon" not in data:
        refs.append((("icon",), implicit_icon, ICON_MAX, "icon"))
    runtime = data.get("runtime")
    check = runtime.get("check") if isinstance(runtime, dict) else None
    predict = check.get("predict") if isinstance(check, dict) else None
    files = predict.get("files") if isinstance(predict, dict) else None
    if isinstance(files, dict):
        for name, rel in files.items():
            if isinstance(rel, str):
                path = ("runtime", "check", "predict", "files", name)
                refs.append((path, rel, SAMPLE_MAX, "sample file"))
    return refs


def lexical_path_problem(rel: str) -> str | None:
    """Refuse paths that leave the module directory before anything looks at the disk."""
    if not rel or rel.startswith(("/", "~")) or "\\" in rel or ":" in rel.split("/")[0]:
        return "must be a relative path inside the module's directory"
    if ".." in PurePosixPath(rel).parts:
        return "must not contain '..': files stay inside the module's directory"
    return None


def warning(problem: Problem) -> Problem:
    return dataclasses.replace(problem, severity="warning")


def placeholder_problems(parsed: ParsedYaml, schema_problems: list[Problem]) -> list[Problem]:
    """Values still holding scaffold or template text, as warnings.

    A value the schema already refused (e.g. `https://demo_url`, which has no valid host)
    gets one message, not two: the schema's is replaced by the placeholder's, kept an error.
    """
    by_path = {p.path: p for p in schema_problems if p.path}
    out = []
    for path, message in placeholder_fields(parsed.data):
        found = parsed.problem(path, message)
        earlier = by_path.get(found.path)
        if earlier is not None:
            schema_problems[schema_problems.index(earlier)] = dataclasses.replace(
                earlier, message=message
            )
        else:
            out.append(warning(found))
    return out


def readme_problems(text: str, display: str) -> list[Problem]:
    """README lines still holding the scaffold's text, as warnings located in the README."""
    return [
        Problem(display, line, col, "", message, severity="warning")
        for line, col, message in placeholder_lines(text)
    ]


def module_rules(
    parsed: ParsedYaml,
    dir_name: str | None,
    files: Mapping[str, FileFact],
    flagged: frozenset[str] = frozenset(),
    implicit_icon: str | None = None,
) -> list[Problem]:
    """Rules over one module.yml (already schema-checked) and the files it references.

    `flagged` holds field paths the schema already reported; their file checks are skipped so
    that one mistake gives one message.
    """
    data = parsed.data
    if not isinstance(data, dict):
        return []
    out: list[Problem] = []
    module_id = data.get("id")
    if dir_name is not None and isinstance(module_id, str) and module_id != dir_name:
        out.append(
            parsed.problem(
                ("id",),
                f"id {module_id!r} differs from its directory name {dir_name!r}; "
                "rename one so they match",
            )
        )
    categories = data.get("categories") if isinstance(data.get("categories"), list) else []
    runtime = data.get("runtime") if isinstance(data.get("runtime"), dict) else {}
    train = runtime.get("train")
    if isinstance(train, bool) and train != ("trainable" in categories):
        if train:
            msg = "is true but categories lack 'trainable'; add it, or set train: false"
        else:
            msg = "is false but categories include 'trainable'; remove it, or set train: true"
        out.append(parsed.problem(("runtime", "train"), msg))
    dates = data.get("dates") if isinstance(data.get("dates"), dict) else {}
    created, updated = dates.get("created"), dates.get("updated")
    both_valid = all(isinstance(d, str) and check_date(d) is None for d in (created, updated))
    if both_valid and updated < created:
        out.append(parsed.problem(("dates", "updated"), f"{updated} is before created ({created})"))
    resources = data.get("resources") if isinstance(data.get("resources"), dict) else {}
    for purpose, res in resources.items():
        if isinstance(res, dict) and res.get("gpu_memory_MB") and not res.get("gpu"):
            out.append(
                parsed.problem(
                    ("resources", purpose, "gpu_memory_MB"),
                    "is set but gpu is 0; request a gpu or drop gpu_memory_MB",
                )
            )
    for path, rel, cap, what in referenced_files(data, implicit_icon):
        if dotted(path) in flagged:
            continue
        before = len(out)
        lexical = lexical_path_problem(rel)
        if lexical:
            out.append(parsed.problem(path, f"{rel!r} {lexical}"))
            continue
        fact = files.get(rel, FileFact("missing"))
        if fact.kind == "missing":
            out.append(
                parsed.problem(path, f"{what} {rel!r} does not exist in the module's directory")
            )
        elif fact.kind == "not-a-file":
            out.append(parsed.problem(path, f"{what} {rel!r} is not a regular file"))
        elif fact.kind == "escapes":
            out.append(
                parsed.problem(
                    path, f"{what} {rel!r} resolves outside the module's directory (symlink?)"
                )
            )
        elif fact.size > cap:
            out.append(
                parsed.problem(
                    path,
                    f"{what} {rel!r} is {fact.size} bytes; the limit is {human_size(cap)}",
                )
            )
        elif what == "icon" and fact.active:
            out.append(
                parsed.problem(
                    path,
                    f"icon {rel!r} holds active SVG content (script, event handler, "
                    "foreignObject, javascript: link, entity…) that would run on the "
                    "marketplace; export it as plain shapes",
                )
            )
        if path == ("icon",) and "icon" not in data:  # found beside module.yml, not named
            out[before:] = [
                dataclasses.replace(
                    p, message=p.message + " (it sits beside module.yml, so it is the icon)"
                )
                for p in out[before:]
            ]
    return out


def index_entries(parsed: ParsedYaml) -> tuple[list[IndexEntry], list[Problem]]:
    """The usable entries of a schema-checked modules.yml, and duplicate-id problems."""
    entries: list[IndexEntry] = []
    out: list[Problem] = []
    data = parsed.data
    items = data.get("modules") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return entries, out
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        module_id = item["id"]
        if module_id in first:
            line = parsed.pos(("modules", first[module_id], "id"))[0]
            out.append(
                parsed.problem(
                    ("modules", i, "id"),
                    f"duplicate id {module_id!r} (first listed at line {line})",
                )
            )
            continue
        first[module_id] = i
        entries.append(IndexEntry(module_id, item.get("deploy") is True, i))
    return entries, out


def catalog_rules(
    index: ParsedYaml,
    entries: list[IndexEntry],
    module_dirs: Mapping[str, str],
    modules: Mapping[str, ParsedYaml],
) -> list[Problem]:
    """modules.yml and catalog/ agree both ways; auto-deploy only what can serve inference.

    `module_dirs` maps each directory name under catalog/ to its module.yml display path;
    `modules` holds the parsed module.yml of each directory that has a usable one.
    """
    out: list[Problem] = []
    listed = {entry.id for entry in entries}
    for entry in entries:
        if entry.id not in module_dirs:
            out.append(
                index.problem(
                    ("modules", entry.index, "id"),
                    f"no module directory catalog/{entry.id}/ for this entry; "
                    f"create it with `deepmarket new {entry.id}` or remove the entry",
                )
            )
            continue
        parsed = modules.get(entry.id)
        data = parsed.data if parsed is not None else None
        if entry.deploy and isinstance(data, dict):
            categories = data.get("categories") or []
            if "inference" not in categories:
                out.append(
                    index.problem(
                        ("modules", entry.index, "deploy"),
                        f"module {entry.id!r} is auto-deployed for inference but its categories "
                        "lack 'inference'",
                    )
                )
    out.extend(duplicate_problems(entries, modules))
    for name, display in module_dirs.items():
        if name not in listed:
            out.append(
                Problem(
                    display,
                    1,
                    1,
                    "",
                    f"module {name!r} is not listed in modules.yml; add `- id: {name}` there",
                )
            )
    return out


def source_key(url: str) -> str | None:
    """What makes two source links the same repository (and folder, for monorepos).

    `https://GitHub.com/Org/Repo.git/` and `http://github.com/org/repo` are one repository;
    `…/tree/main/a` and `…/tree/dev/a` are one folder of it; `…/tree/main/b` is another.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.hostname or "").lower().removeprefix("www.")
    if not host:
        return None
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) >= 2:
        segments[1] = re.sub(r"\.git$", "", segments[1])
    if len(segments) >= 4 and segments[2] in ("tree", "blob", "-"):
        rest = segments[4:] if segments[2] != "-" else segments[5:]
        segments = segments[:2] + rest  # drop the branch: any ref of one folder is the same
    return host + "/" + "/".join(s.lower() for s in segments)


def duplicate_problems(
    entries: list[IndexEntry], modules: Mapping[str, ParsedYaml]
) -> list[Problem]:
    """Modules whose title or source repository repeats an earlier module's, as warnings.

    Two cards with one title cannot be told apart on the marketplace; two entries for one
    repository are usually the same module listed twice. The first in marketplace order wins.
    """
    out: list[Problem] = []
    titles: dict[str, str] = {}
    sources: dict[str, str] = {}
    for entry in entries:
        parsed = modules.get(entry.id)
        data = parsed.data if parsed is not None else None
        if not isinstance(data, dict):
            continue
        title = data.get("title")
        if isinstance(title, str) and title.strip():
            key = " ".join(title.casefold().split())
            if key in titles:
                out.append(
                    warning(
                        parsed.problem(
                            ("title",),
                            f"{title!r} is also the title of module {titles[key]!r}; give "
                            "this module a title of its own so visitors can tell them apart",
                        )
                    )
                )
            else:
                titles[key] = entry.id
        links = data.get("links") if isinstance(data.get("links"), dict) else {}
        source = links.get("source_code")
        key = source_key(source) if isinstance(source, str) else None
        if key:
            if key in sources:
                out.append(
                    warning(
                        parsed.problem(
                            ("links", "source_code"),
                            f"module {sources[key]!r} already links this repository; if it "
                            "is the same module, update that entry instead of adding another",
                        )
                    )
                )
            else:
                sources[key] = entry.id
    return out
