"""Subcommands: module serve, module check."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepmarket.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    module = sub.add_parser("module", help="serve a DEEPaaS module locally, check a server")
    actions = module.add_subparsers(dest="module_command", metavar="ACTION", required=True)

    serve = actions.add_parser(
        "serve",
        help="run deepaas-run for an installed module on 127.0.0.1",
        description="Run deepaas-run for a module package installed in this environment. "
        "TARGET is the package directory (its pyproject declares the deepaas.v2.model entry "
        "point) or a catalog id (module.yml's runtime.model names the model). With "
        "--cors-origin a small proxy in front of deepaas-run answers CORS preflights, so a "
        "web page on that origin can call the API.",
    )
    serve.add_argument("target", metavar="TARGET", help="module package directory or catalog id")
    serve.add_argument("--port", type=int, default=5000, help="listen port (default 5000)")
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (scheme://host[:port], or *); repeatable",
    )
    serve.add_argument(
        "--root", type=Path, default=Path(), help="catalog root for a catalog id (default: .)"
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from deepmarket.modules import cors, serve, targets

    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: expected 1-65535")
    try:
        origins = cors.parse_origins(args.cors_origin)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    target = targets.resolve(args.target, args.root, targets.installed_models())
    return serve.serve(target.model, args.port, origins)
