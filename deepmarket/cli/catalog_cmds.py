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
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "list", help="print the catalog as a table (id, title, categories, libraries)"
    )
    p.add_argument("--root", type=Path, default=Path(), help="catalog root (default: .)")
    p.set_defaults(func=cmd_list)


def cmd_validate(args: argparse.Namespace) -> int:
    from deepmarket.catalog.loader import scan_catalog, validate_paths
    from deepmarket.catalog.report import render, summary

    if args.paths:
        problems = validate_paths(args.paths, args.root)
        checked = len(args.paths)
    else:
        catalog, problems = scan_catalog(args.root)
        checked = len(catalog)
    out = render(problems, args.format, checked=checked)
    if out:
        print(out)
    if args.format != "json":
        print(summary(problems, checked), file=sys.stderr)
    return 1 if problems else 0


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
