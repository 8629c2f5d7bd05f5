"""Subcommands: validate, list, new, import."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    p = sub.add_parser(
        "validate",
        help="check modules.yml and every module (or only the given files)",
        description="Check the catalog: modules.yml, every catalog/<id>/module.yml, the files "
        "they reference, and that the two agree. Exit 0 valid, 1 invalid, 2 usage or I/O error.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="module.yml files, module directories or modules.yml (default: all)",
    )
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text (file:line:col: field: message), json, or github annotations",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="treat warnings (text left from the scaffold, duplicate titles or repositories) "
        "as errors; the default when the environment has CI=true",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "list", help="print the catalog as a table (id, title, categories, libraries)"
    )
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "new",
        help="scaffold catalog/<id>/ (module.yml, README.md) and append the id to modules.yml",
    )
    p.add_argument("id", help="module id: a DNS-1035 label, e.g. plant-classification")
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser(
        "import",
        help="convert a DEEP v1 metadata.json or AI4OS v2 ai4-metadata.yml/json into an entry",
        description="Convert existing module metadata into catalog/<id>/module.yml, append the "
        "id to modules.yml, say what could not be mapped, and validate the result.",
    )
    p.add_argument("source", type=Path, help="metadata.json, ai4-metadata.yml or .json")
    p.add_argument("--id", dest="module_id", help="module id (default: from the image name)")
    p.add_argument("--image", help="container image pinned by tag or digest (runtime.image)")
    p.add_argument("--license", dest="licence", help="SPDX licence id, when the source has none")
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.add_argument("--dry-run", action="store_true", help="print module.yml, write nothing")
    p.set_defaults(func=cmd_import)


def in_ci() -> bool:
    """CI services (GitHub Actions, GitLab, …) set CI=true."""
    import os

    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def cmd_validate(args: argparse.Namespace) -> int:
    from deepmarket.catalog.loader import scan_catalog, strict, validate_paths
    from deepmarket.catalog.report import render, summary

    if args.paths:
        problems = validate_paths(args.paths, args.root)
        checked = len(args.paths)
    else:
        catalog, problems = scan_catalog(args.root)
        checked = len(catalog)
    if args.strict or (args.strict is None and in_ci()):
        problems = strict(problems)
    out = render(problems, args.format, checked=checked)
    if out:
        print(out)
    if args.format != "json":
        print(summary(problems, checked), file=sys.stderr)
    return 1 if any(p.is_error for p in problems) else 0


def table(rows: list[list[str]]) -> str:
    """Left-aligned columns, the first row as header, separated by a rule."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from deepmarket.catalog import load_catalog

    catalog = load_catalog(args.root)
    rows = [["ID", "TITLE", "CATEGORIES", "LIBRARIES"]]
    for module in catalog:
        rows.append(
            [
                module.id,
                module.title,
                ", ".join(module.categories),
                ", ".join(module.data.get("libraries", [])),
            ]
        )
    print(table(rows))
    print(f"{len(catalog)} module{'s' if len(catalog) != 1 else ''}", file=sys.stderr)
    return 0


def _existing_ids(index: Path) -> tuple[str, list[str]]:
    from deepmarket.catalog.scaffold import index_ids
    from deepmarket.errors import UserError

    text = index.read_text(encoding="utf-8") if index.exists() else ""
    try:
        return text, index_ids(text)
    except Exception as exc:  # ruamel's errors are many; any of them means "fix it first"
        raise UserError(f"{index} cannot be read as YAML; fix it first ({exc})") from None


def add_module_files(root: Path, module_id: str, files: dict[str, str]) -> list[Path]:
    """Write catalog/<id>/ and append the id to modules.yml; refuse an existing id."""
    from deepmarket.catalog.scaffold import append_to_index, check_new_id
    from deepmarket.errors import UserError

    check_new_id(module_id)
    index = root / "modules.yml"
    text, ids = _existing_ids(index)
    module_dir = root / "catalog" / module_id
    if module_id in ids:
        raise UserError(f"module {module_id!r} is already listed in {index}")
    if module_dir.exists() or module_dir.is_symlink():
        raise UserError(f"{module_dir} already exists")
    new_index = append_to_index(text, module_id)
    written = []
    for rel, content in files.items():
        path = module_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    index.write_text(new_index, encoding="utf-8")
    written.append(index)
    return written


def cmd_new(args: argparse.Namespace) -> int:
    import datetime as dt

    from deepmarket.catalog.scaffold import module_scaffold

    files = module_scaffold(args.id, dt.date.today())
    for path in add_module_files(args.root, args.id, files):
        print(f"wrote {path}")
    module_dir = args.root / "catalog" / args.id
    print(
        f"next: replace every TODO and your-org placeholder in {module_dir / 'module.yml'} and "
        f"{module_dir / 'README.md'}; put an icon.svg or icon.png beside them if you have one; "
        "preview with `deepmarket site serve`; then `deepmarket validate` (placeholders are "
        "warnings here and errors in CI) and open a pull request",
        file=sys.stderr,
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from deepmarket.catalog.importers import convert, module_yaml
    from deepmarket.catalog.loader import read_capped, validate_paths
    from deepmarket.catalog.model import Problem
    from deepmarket.catalog.scaffold import check_new_id
    from deepmarket.catalog.yamlsource import Limits, parse_yaml
    from deepmarket.errors import UsageError, UserError

    limits = Limits(max_bytes=1024 * 1024, max_depth=32, max_nodes=50_000)
    raw = read_capped(args.source, str(args.source), limits.max_bytes)
    if isinstance(raw, Problem):
        raise UsageError(str(raw))
    parsed = parse_yaml(raw, str(args.source), limits)  # JSON is YAML: one parser for both
    if parsed.problems:
        raise UserError(str(parsed.problems[0]))
    imported = convert(
        parsed.data, module_id=args.module_id, image=args.image, licence=args.licence
    )
    check_new_id(imported.id)
    text = module_yaml(imported, args.source.name)
    for note in imported.notes:
        print(f"import: {note}", file=sys.stderr)
    if args.dry_run:
        print(text, end="")
        return 0
    written = add_module_files(args.root, imported.id, {"module.yml": text})
    for path in written:
        print(f"wrote {path}")
    module_file = written[0]
    problems = validate_paths([module_file], args.root)
    if problems:
        failed = any(p.is_error for p in problems)
        print(
            f"{module_file} does not validate yet; fix these and run `deepmarket validate`:"
            if failed
            else f"{module_file} is valid, but CI will refuse these warnings; fix them:",
            file=sys.stderr,
        )
        for problem in problems:
            print(str(problem), file=sys.stderr)
        return 1 if failed else 0
    print(f"{module_file} is valid", file=sys.stderr)
    return 0
