"""Subcommands: site build, site serve."""

from __future__ import annotations

import argparse
from pathlib import Path

BASE_URL_HELP = (
    "deployment base URL for the try-it forms ({id} is replaced by the module id, otherwise "
    "/<id>/ is appended); default: $DEEPMARKET_DEPLOY_BASE_URL"
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    site = sub.add_parser("site", help="build or serve the marketplace website")
    site_sub = site.add_subparsers(dest="site_command", metavar="ACTION", required=True)

    build = site_sub.add_parser("build", help="build the static marketplace into public/")
    _common(build)
    build.add_argument(
        "-d",
        "--site-dir",
        type=Path,
        default=None,
        help="output directory (default: site_dir in mkdocs.yml, public/)",
    )
    build.add_argument(
        "--no-strict", dest="strict", action="store_false", help="do not fail on mkdocs warnings"
    )
    build.add_argument(
        "--site-url",
        default=None,
        help="where the site is published, e.g. https://example.org/market/ (a sub-path "
        "works): sitemap, canonical links, a 404 page that works at any depth; default: "
        "site_url in mkdocs.yml ($DEEPMARKET_SITE_URL)",
    )
    build.set_defaults(func=cmd_build)

    serve = site_sub.add_parser("serve", help="serve the marketplace with live reload")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("-p", "--port", type=int, default=8000, help="port (default 8000)")
    serve.set_defaults(func=cmd_serve)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--config-file",
        type=Path,
        default=Path("mkdocs.yml"),
        help="mkdocs configuration (default: mkdocs.yml)",
    )
    parser.add_argument(
        "--catalog",
        type=Path,
        default=None,
        help="catalog root holding modules.yml (default: beside mkdocs.yml)",
    )
    parser.add_argument("--base-url", default=None, help=BASE_URL_HELP)


def cmd_build(args: argparse.Namespace) -> int:
    from deepmarket.site.build import build_site

    out = build_site(
        args.config_file,
        site_dir=args.site_dir,
        catalog=args.catalog,
        deploy_base_url=args.base_url,
        strict=args.strict,
        site_url=args.site_url,
    )
    print(f"marketplace built in {out}/ (open {out / 'index.html'})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from deepmarket.site.build import serve_site

    serve_site(
        args.config_file,
        host=args.host,
        port=args.port,
        catalog=args.catalog,
        deploy_base_url=args.base_url,
    )
    return 0
