"""Subcommand: sync — ask the operator to sync a CatalogSource now, and wait for the outcome."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

OK = ("Succeeded", "Conflict")


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    conds = status.get("conditions") or []
    return next((c for c in conds if c.get("type") == "Ready"), {})


def cmd_sync(args: argparse.Namespace) -> int:
    from deepmarket.controller.kube import ApiError, Kube, make_api_client, object_path
    from deepmarket.controller.sync.plan import API, APPROVE_ANNOTATION, REQUESTED_AT_ANNOTATION
    from deepmarket.errors import UserError

    kube = Kube(make_api_client(args.kubeconfig))
    path = object_path(API, "CatalogSource", args.namespace, args.name)
    where = f"CatalogSource {args.namespace}/{args.name}"
    try:
        source = kube.request("GET", path)
    except ApiError as err:
        if err.status == 404:
            raise UserError(f"no {where} (see `kubectl get catalogsources -A`)") from None
        raise UserError(f"cannot read {where}: {err}") from None
    notes: dict[str, str] = {
        REQUESTED_AT_ANNOTATION: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    }
    if args.approve:
        held = (source.get("status") or {}).get("heldRevision")
        if not held:
            raise UserError(f"{where} holds no revision for approval (status.heldRevision)")
        notes[APPROVE_ANNOTATION] = held
        print(f"approving {held}", flush=True)
    try:
        kube.request("PATCH", path, body={"metadata": {"annotations": notes}},
                     content_type="application/merge-patch+json")  # fmt: skip
    except ApiError as err:
        raise UserError(f"cannot annotate {where}: {err}") from None
    if args.no_wait:
        print(f"sync of {where} requested", flush=True)
        return 0
    print(f"sync of {where} requested; waiting for the operator …", flush=True)
    deadline = time.monotonic() + args.timeout
    while True:
        status = kube.request("GET", path).get("status") or {}
        if status.get("lastHandledRequestedAt") == notes[REQUESTED_AT_ANNOTATION]:
            break
        if time.monotonic() > deadline:
            raise UserError(
                f"the operator did not handle the request within {args.timeout:.0f}s; is it "
                "running (`kubectl get pods -n deepmarket-system`), and is the source suspended?"
            )
        time.sleep(0.5)
    ready = _ready(status)
    print(f"{ready.get('reason')}: {ready.get('message')}", flush=True)
    print(f"revision: {status.get('lastAppliedRevision') or '-'}; "
          f"modules: {status.get('modules', 0)}", flush=True)  # fmt: skip
    if ready.get("reason") not in OK:
        print("deepmarket: the sync did not apply the newest revision (see above)", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    p = sub.add_parser(
        "sync",
        help="sync a CatalogSource now and wait for the outcome",
        description="Ask the operator to sync a CatalogSource at once (annotation "
        "deepmarket.dev/requested-at) and print what it did. --approve also approves the "
        "revision it holds (a force-push or a mass deletion).",
    )
    p.add_argument("name", help="the CatalogSource")
    p.add_argument("--namespace", "-n", default="default", help="its namespace (default: default)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--approve", action="store_true",
                   help="approve the revision in status.heldRevision")  # fmt: skip
    p.add_argument("--no-wait", action="store_true", help="only request the sync")
    p.add_argument("--timeout", type=float, default=120, metavar="SECONDS",
                   help="how long to wait for the outcome (default 120)")  # fmt: skip
    p.set_defaults(func=cmd_sync)
