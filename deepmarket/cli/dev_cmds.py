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

    p = dev_sub.add_parser(
        "up",
        help="start the dev cluster (4 GPU nodes x 8 GPUs, 2 CPU nodes, one real node)",
        description="Start the control plane with simulated GPU/CPU nodes and, where this "
        "machine allows it (Linux, root, containerd + runc), one real node whose pods really "
        "run: its kubelet and kube-proxy are built like the other binaries and the module "
        "images with `deepmarket dev images`.",
    )
    p.add_argument(
        "--no-real-node",
        action="store_true",
        help="simulated nodes only (no kubelet, containerd or iptables changes on this machine)",
    )
    p.set_defaults(func=cmd_up)
    p = dev_sub.add_parser(
        "images",
        help="build the real node's images (Python base, examples/modules/*) without Docker",
        description="Build a Debian bookworm Python 3.11 base with debootstrap + podman and "
        "each module in examples/modules/ from its Dockerfile on that base, tagged with the "
        "catalog's image names; cached under ~/.cache/deepmarket/images/ by content. A running "
        "`dev up` real node gets them imported. Then removes what earlier builds left behind: old "
        "archives, podman's untagged images built from the local base, and the node's images "
        "these replaced (only deepmarket's own and the catalog's names, nothing else).",
    )
    p.set_defaults(func=cmd_images)
    p = dev_sub.add_parser(
        "ingress",
        help="a local ingress: <prefix>/ on 127.0.0.1 -> a module's in-cluster Service, with CORS",
        description="The dev cluster's Services answer on cluster IPs the host can reach but a "
        "browser page on another origin cannot call (no CORS, no path prefix). This forwards "
        "http://127.0.0.1:PORT<prefix>/ to the in-cluster URL, the way a cluster's ingress "
        "would; the demo runs it for the marketplace's try-it form.",
    )
    p.add_argument("--port", type=int, default=5000, help="listen port on 127.0.0.1")
    p.add_argument(
        "--route",
        required=True,
        metavar="PREFIX=URL",
        help="e.g. /digits-classifier=http://10.0.0.57:5000 (the module's Service)",
    )
    p.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN", help="repeatable"
    )
    p.set_defaults(func=cmd_ingress)
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

    return devenv.up(say, real_node=not args.no_real_node)


def cmd_down(args: argparse.Namespace) -> int:
    from deepmarket.devcluster import devenv

    return devenv.down(say)


def cmd_status(args: argparse.Namespace) -> int:
    from deepmarket.devcluster import devenv

    return devenv.status()


def cmd_images(args: argparse.Namespace) -> int:
    from deepmarket.devcluster import images, realnode

    built = images.build_all(say)
    for image in built:
        how = "cached" if image.cached else f"built in {image.seconds:.0f}s"
        size = image.archive.stat().st_size / 2**20
        print(f"{', '.join(image.tags):<50} {size:5.0f} MiB  {how}")
    # What earlier builds left: old archives, podman's untagged images, the node's old images.
    images.prune(built, say)
    record = realnode.read_record()
    if record and record.get("owner_pid"):
        # A test run's or bench's node: its images are its own business.
        say(f"the real node running now belongs to pid {record['owner_pid']}; not importing")
    elif record and realnode.import_images(record, [b.archive for b in built]):
        say(f"imported into the running real node's containerd ({record['socket']})")
        realnode.prune_images(record, [tag for b in built for tag in b.tags], say)
    return 0


def cmd_ingress(args: argparse.Namespace) -> int:
    from aiohttp import web

    from deepmarket.errors import UsageError
    from deepmarket.modules import cors, serve

    prefix, sep, backend = args.route.partition("=")
    if not sep or not backend.startswith("http://"):
        raise UsageError(f"--route {args.route!r}: expected PREFIX=http://HOST:PORT")
    try:
        origins = cors.parse_origins(args.cors_origin)
        prefix = cors.parse_prefix(prefix)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    serve.ensure_port_free(serve.LOOPBACK, args.port)
    say(f"ingress: http://{serve.LOOPBACK}:{args.port}{prefix}/ -> {backend.rstrip('/')}/")
    web.run_app(
        cors.proxy_app(backend.rstrip("/"), origins, serve.MAX_BODY, prefix),
        host=serve.LOOPBACK,
        port=args.port,
        print=None,
        access_log=None,
    )
    return 0
