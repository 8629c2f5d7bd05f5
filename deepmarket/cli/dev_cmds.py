"""Subcommands: dev binaries, dev up/down/status."""

from __future__ import annotations

import argparse

from deepmarket.cli.progress import say


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    dev = sub.add_parser(
        "dev",
        help="local Kubernetes control plane (etcd, kube-apiserver, KWOK GPU nodes)",
        description="The embedded default cluster: a real control plane on 127.0.0.1 with "
        "simulated (KWOK) GPU nodes, for the demo and the tests.",
    )
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)

    p = dev_sub.add_parser(
        "binaries",
        help="find or build etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok",
        description="Use $KUBEBUILDER_ASSETS, then binaries on PATH that report the pinned "
        "version, then the cache (~/.cache/deepmarket/k8s-<version>/); build what is missing "
        "with `go build` through the wrapper modules in tools/.",
    )
    p.add_argument(
        "--no-build", action="store_true", help="only report; fail if something is missing"
    )
    p.set_defaults(func=cmd_binaries)

    p = dev_sub.add_parser("up", help="start the dev cluster (4 GPU nodes x 8 GPUs, 2 CPU nodes)")
    p.set_defaults(func=cmd_up)
    p = dev_sub.add_parser("down", help="stop the dev cluster and delete its data")
    p.set_defaults(func=cmd_down)
    p = dev_sub.add_parser("status", help="say whether the dev cluster runs (exit 3 if not)")
    p.set_defaults(func=cmd_status)


def cmd_binaries(args: argparse.Namespace) -> int:
    from deepmarket.devcluster.binaries import cache_dir, disk_usage, ensure_binaries

    found = ensure_binaries(say, build=not args.no_build)
    for line in found.describe():
        print(line)
    cache = cache_dir()
    print(f"cache: {cache} ({disk_usage(cache) / 2**20:.0f} MiB)")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from deepmarket.devcluster import devenv

    return devenv.up(say)


def cmd_down(args: argparse.Namespace) -> int:
    from deepmarket.devcluster import devenv

    return devenv.down(say)


def cmd_status(args: argparse.Namespace) -> int:
    from deepmarket.devcluster import devenv

    return devenv.status()
