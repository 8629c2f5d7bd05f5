"""The `deepmarket` command. Each surface registers its own subcommands; this module only
dispatches and turns expected failures into one-line messages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from deepmarket import __version__
from deepmarket.cli import (
    admin_cmds,
    catalog_cmds,
    controller_cmds,
    demo_cmds,
    dev_cmds,
    module_cmds,
    site_cmds,
    submit_cmds,
    sync_cmds,
    training_cmds,
)
from deepmarket.errors import UserError

SURFACES = (
    catalog_cmds,
    site_cmds,
    module_cmds,
    dev_cmds,
    controller_cmds,
    demo_cmds,
    submit_cmds,
    sync_cmds,
    training_cmds,
)
SURFACES += (admin_cmds,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepmarket",
        description="Catalog, marketplace and Kubernetes operator for DEEPaaS modules.",
    )
    parser.add_argument("--version", action="version", version=f"deepmarket {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for surface in SURFACES:
        surface.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"deepmarket: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("deepmarket: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
