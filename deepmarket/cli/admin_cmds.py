"""Subcommands for cluster admins: admin quota."""

from __future__ import annotations

import argparse


def cmd_quota(args: argparse.Namespace) -> int:
    from deepmarket.controller.kube import ApiError, Kube, make_api_client
    from deepmarket.controller.tenancy import build_quota, describe_quota
    from deepmarket.errors import UsageError, UserError

    try:
        quota = build_quota(
            args.namespace,
            gpus=args.gpus,
            deepmodules=args.deepmodules,
            trainingruns=args.trainingruns,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    kube = Kube(make_api_client(args.kubeconfig, pool_size=1), timeout=args.timeout)
    ns = args.namespace
    try:
        path = f"/api/v1/namespaces/{ns}/resourcequotas/{quota['metadata']['name']}"
        written = kube.request(
            "PATCH",
            path,
            body=quota,
            query=[("fieldManager", "deepmarket-admin"), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
    except ApiError as err:
        # Server-side apply into a missing namespace answers 404.
        if err.status == 404:
            raise UserError(
                f"namespace {ns} does not exist: create it first (kubectl create namespace {ns})"
            ) from None
        if err.status in (401, 403):
            raise UserError(
                f"your credentials may not write ResourceQuotas in namespace {ns} "
                f"({err.message}): run this as a cluster admin"
            ) from None
        if err.status == 0:
            raise UserError(f"cannot reach the cluster: {err.message}") from None
        raise UserError(f"writing the quota in namespace {ns} failed: {err}") from None
    print(f"ResourceQuota {written['metadata']['name']} in namespace {ns}:")
    for line in describe_quota(written):
        print(f"  {line}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    admin = sub.add_parser("admin", help="cluster-admin helpers (team quotas)")
    asub = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    p = asub.add_parser(
        "quota",
        help="limit a team's GPUs (and DeepModules/TrainingRuns) in its namespace",
        description="Write (create or replace) the ResourceQuota deepmarket-quota in NAMESPACE: "
        "requests.nvidia.com/gpu caps the GPUs all pods there may request together; the "
        "optional counts cap DeepModules and TrainingRuns. Kubernetes enforces it; modules "
        "over it report 'quota exhausted' in their status.",
    )
    p.add_argument("namespace", help="the team's namespace")
    p.add_argument("--gpus", type=int, required=True, metavar="N", help="GPUs in all (0 or more)")
    p.add_argument("--deepmodules", type=int, metavar="N", help="most DeepModules (optional)")
    p.add_argument("--trainingruns", type=int, metavar="N", help="most TrainingRuns (optional)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--timeout", type=float, default=30, help="seconds per API call (default 30)")
    p.set_defaults(func=cmd_quota)
