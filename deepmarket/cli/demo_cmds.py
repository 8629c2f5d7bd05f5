"""Subcommand: demo (the whole platform on the embedded default; what `make run` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepmarket.cli.progress import say
from deepmarket.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    p = sub.add_parser(
        "demo",
        help="run the whole platform locally: dev cluster, operator, a live module, marketplace",
        description="Validate the catalog; start the dev cluster (`deepmarket dev up`, building "
        "the Kubernetes binaries the first time); install the CRDs and run the operator; apply "
        "a DeepModule for every `deploy: true` module and wait until they are Ready on the "
        "simulated nodes; serve the digits module for real at the marketplace's try-it path; "
        "serve the marketplace. Ctrl-C stops what the demo started; the cluster keeps running "
        "until `deepmarket dev down`. $DEEPMARKET_DEV_DIR chooses another cluster state dir.",
    )
    p.add_argument(
        "--root",
        type=Path,
        default=Path(),
        help="repository root with modules.yml, controller/, mkdocs.yml (default: .)",
    )
    p.add_argument(
        "--site-port",
        type=int,
        default=8000,
        help="marketplace port (default 8000; 0: any free port)",
    )
    p.add_argument(
        "--module-port",
        type=int,
        default=5000,
        help="port of the live digits module (default 5000; 0: any free port)",
    )
    p.add_argument("--namespace", default="deepmarket", help="namespace of the DeepModules")
    p.add_argument(
        "--no-real-node",
        action="store_true",
        help="no real node: every pod simulated, the digits module served on loopback",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="how long DeepModules may take to become Ready (default 180)",
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="bring everything up, check it, stop the demo's processes and exit "
        "(non-zero on any failure)",
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import signal

    from deepmarket.demo import DemoConfig, run

    for flag, port in (("--site-port", args.site_port), ("--module-port", args.module_port)):
        if not 0 <= port < 65536:
            raise UsageError(f"{flag} {port}: expected 0-65535")
    if args.site_port and args.site_port == args.module_port:
        raise UsageError("--site-port and --module-port must differ")

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM stops the demo the way Ctrl-C does; SIGINT is set too because a shell that
    # starts a command in the background (`make run &`) leaves it ignored.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    cfg = DemoConfig(
        root=args.root.resolve(),
        site_port=args.site_port,
        module_port=args.module_port,
        namespace=args.namespace,
        once=args.once,
        ready_timeout=args.ready_timeout,
        real_node=not args.no_real_node,
    )
    return run(cfg, say)
