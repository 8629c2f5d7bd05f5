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
        "--path-prefix",
        default="",
        metavar="PATH",
        help="answer under this path only, e.g. /digits-classifier (the marketplace's "
        "<base>/<module-id>/ scheme); the prefix is removed before deepaas-run sees it",
    )
    serve.add_argument(
        "--root", type=Path, default=Path(), help="catalog root for a catalog id (default: .)"
    )
    serve.set_defaults(func=cmd_serve)

    check = actions.add_parser(
        "check",
        help="check that a running DEEPaaS server conforms (pass/fail table)",
        description="Call a running DEEPaaS server and check it the way deepmarket will use "
        "it: /v2/ answers; /v2/models/ lists exactly one model (not the DEEPaaS test "
        "fallback) with name, author and licence; /swagger.json declares predict's "
        "arguments; a predict call with a sample input answers what the module's schema "
        "declares; with --train, a training round-trip finishes. Exits 1 when a check fails.",
    )
    check.add_argument("url", metavar="URL", help="server base URL, e.g. http://127.0.0.1:5000")
    source = check.add_mutually_exclusive_group()
    source.add_argument(
        "--module",
        metavar="ID",
        help="catalog id: use its runtime.check.predict sample and expect its runtime.model",
    )
    source.add_argument("--sample", type=Path, metavar="FILE", help="a file to predict on")
    check.add_argument(
        "--field", metavar="NAME", help="form field for --sample (default: the only file arg)"
    )
    check.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a file for predict's file argument NAME; repeatable (modules with several inputs)",
    )
    check.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="predict argument, placed where the API declares it (query, form or header), "
        "e.g. accept=image/png; repeatable",
    )
    check.add_argument("--train", action="store_true", help="also run a training round-trip")
    check.add_argument(
        "--train-arg", action="append", default=[], metavar="NAME=VALUE", help="repeatable"
    )
    check.add_argument(
        "--train-timeout", type=float, default=600.0, metavar="SECONDS", help="default 600"
    )
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument(
        "--root", type=Path, default=Path(), help="catalog root for --module (default: .)"
    )
    check.set_defaults(func=cmd_check)


def cmd_serve(args: argparse.Namespace) -> int:
    from deepmarket.modules import cors, serve, targets

    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: expected 1-65535")
    try:
        origins = cors.parse_origins(args.cors_origin)
        prefix = cors.parse_prefix(args.path_prefix)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    serve.ensure_port_free(serve.LOOPBACK, args.port)
    target = targets.resolve(args.target, args.root, targets.installed_models())
    return serve.serve(target.model, args.port, origins, prefix=prefix)


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {value!r}: expected NAME=VALUE")
        pairs[key] = val
    return pairs


def cmd_check(args: argparse.Namespace) -> int:
    import sys

    from deepmarket.modules import checker, conformance, report, targets

    url = targets.check_base_url(args.url)
    if args.field and not args.sample:
        raise UsageError("--field goes with --sample")
    if args.module and (args.sample or args.file):
        raise UsageError("--module brings its own sample: give --sample/--file without it")
    expected = None
    sample = None
    extra = _pairs(args.arg, "--arg")
    if args.module:
        sample, expected = checker.sample_from_catalog(args.root, args.module)
        if sample is not None and extra:
            sample = conformance.Sample({**sample.args, **extra}, sample.files, sample.origin)
    elif args.sample or args.file or extra:
        files = {k: Path(v) for k, v in _pairs(args.file, "--file").items()}
        sample = checker.sample_from_flags(args.sample, args.field, extra, files)

    def progress(message: str) -> None:
        if args.format == "text":
            print(f"  {message}", file=sys.stderr, flush=True)

    no_sample = "no sample input: give --module ID (with runtime.check.predict) or --sample FILE"
    if args.module and sample is None:
        no_sample = (
            f"catalog/{args.module}/module.yml has no runtime.check.predict: add a sample "
            "input there (as catalog/digits-classifier does) or use --sample"
        )
    checks = checker.run_checks(
        url,
        sample=sample,
        expected_model=expected,
        train=args.train,
        train_args=_pairs(args.train_arg, "--train-arg"),
        train_timeout=args.train_timeout,
        progress=progress,
        no_sample=no_sample,
    )
    render = report.as_json if args.format == "json" else report.as_text
    print(render(url, checks))
    return 0 if report.passed(checks) else 1
