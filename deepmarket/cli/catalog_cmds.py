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
        help="convert DEEP v1 metadata.json / AI4OS v2 ai4-metadata.yml files into entries",
        description="Convert existing module metadata into catalog/<id>/module.yml and append "
        "the id to modules.yml. Each file is converted, then validated in a scratch catalog: "
        "nothing is written unless the entry validates (--draft keeps an invalid one, marked "
        "as a draft). A directory is searched for metadata files; where a v2 file and a v1 "
        "metadata.json lie side by side, the v2 file is imported. Every rewrite, guess and "
        "dropped value is reported and kept as a comment at the top of module.yml. Ends with "
        "a table (file, id, result, notes). Exit 0 when every file imported, 1 otherwise.",
    )
    p.add_argument(
        "sources", nargs="+", type=Path, metavar="PATH", help="metadata files or directories"
    )
    p.add_argument(
        "--id", dest="module_id", help="module id (one file only; default: from the image name)"
    )
    p.add_argument("--image", help="container image pinned by tag or digest (one file only)")
    p.add_argument("--license", dest="licence", help="SPDX licence id, when the source has none")
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print each module.yml and the table, write nothing (id clashes are reported)",
    )
    p.add_argument(
        "--draft",
        action="store_true",
        help="write entries that do not validate yet, marked as drafts listing their problems",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "export",
        help="write catalog entries as AI4OS v2 ai4-metadata.yml or schema.org JSON-LD",
        description="Export catalog modules for other platforms: ai4os-v2 writes an "
        "ai4-metadata.yml that AI4OS's `ai4-metadata validate` accepts; jsonld writes a "
        "schema.org SoftwareApplication (what search engines read).",
    )
    p.add_argument("ids", nargs="*", metavar="ID", help="module ids (or --all)")
    p.add_argument("--all", action="store_true", help="every module of the catalog")
    p.add_argument("--format", choices=("ai4os-v2", "jsonld"), default="ai4os-v2")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="write <id>.ai4-metadata.yml / <id>.jsonld files here (default: print one)",
    )
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.add_argument(
        "--base-url", default="", help="the marketplace's URL, for links to module pages"
    )
    p.set_defaults(func=cmd_export)


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
        f"warnings here and errors in CI) and `deepmarket submit {args.id}` to open the pull "
        "request",
        file=sys.stderr,
    )
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from deepmarket.catalog import importio
    from deepmarket.errors import UsageError

    sources, skipped = importio.find_sources(args.sources)
    if len(sources) > 1 and (args.module_id or args.image):
        raise UsageError("--id and --image name one module: give them with a single file")
    for note in skipped:
        print(f"import: {note}", file=sys.stderr)
    rows = [["FILE", "ID", "RESULT", "NOTES"]]
    taken: set[str] = set()
    failed = 0
    for source in sources:
        outcome = importio.prepare(
            source,
            args.root,
            module_id=args.module_id,
            image=args.image,
            licence=args.licence,
            draft=args.draft,
            taken=taken,
        )
        taken.add(outcome.id)
        prefix = f"import: {source}: " if len(sources) > 1 else "import: "
        for note in outcome.notes:
            print(f"{prefix}{note}", file=sys.stderr)
        for problem in outcome.problems:
            print(problem, file=sys.stderr)
        result = outcome.result
        if args.dry_run:
            if outcome.text and result in ("valid", "invalid", "draft"):
                print(outcome.text, end="")
        elif result in ("valid", "draft"):
            for path in importio.write(args.root, outcome):
                print(f"wrote {path}", file=sys.stderr)
            result = "written" if result == "valid" else "draft written"
        if outcome.result == "invalid":
            print(
                f"{source}: the entry does not validate (above); nothing written. Fix the "
                "source or pass what it lacks, or keep a draft with --draft",
                file=sys.stderr,
            )
        failed += outcome.result != "valid"
        rows.append([str(source), outcome.id or "-", result, str(len(outcome.notes))])
    print(table(rows), file=sys.stderr)
    ok = len(sources) - failed
    print(
        f"{ok} of {len(sources)} file{'s' if len(sources) != 1 else ''} "
        f"{'would import' if args.dry_run else 'imported'} as valid entries",
        file=sys.stderr,
    )
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from deepmarket.catalog import export, load_catalog
    from deepmarket.errors import UsageError

    if bool(args.ids) == bool(args.all):
        raise UsageError("name module ids or give --all (not both)")
    catalog = load_catalog(args.root)
    by_id = {m.id: m for m in catalog}
    unknown = [i for i in args.ids if i not in by_id]
    if unknown:
        raise UsageError(
            f"not in the catalog: {', '.join(unknown)} (known: {', '.join(sorted(by_id))})"
        )
    modules = list(catalog) if args.all else [by_id[i] for i in args.ids]
    if len(modules) > 1 and args.output is None:
        raise UsageError("several modules: give -o DIR to write one file each")
    for module in modules:
        if args.format == "ai4os-v2":
            text, name = export.ai4os_v2_yaml(module), f"{module.id}.ai4-metadata.yml"
        else:
            page = f"{args.base_url.rstrip('/')}/modules/{module.id}/" if args.base_url else None
            text, name = export.jsonld_text(module, page), f"{module.id}.jsonld"
        if args.output is None:
            print(text, end="")
        else:
            args.output.mkdir(parents=True, exist_ok=True)
            (args.output / name).write_text(text, encoding="utf-8")
            print(f"wrote {args.output / name}", file=sys.stderr)
    return 0
