"""Subcommands: controller run."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace
from pathlib import Path


def _toleration(text: str) -> dict[str, str]:
    """KEY[=VALUE][:EFFECT] → a toleration (Exists when no value is given)."""
    effect = ""
    if ":" in text:
        text, effect = text.rsplit(":", 1)
    key, _, value = text.partition("=")
    tol = {"key": key, "operator": "Equal" if value else "Exists"}
    if value:
        tol["value"] = value
    if effect:
        tol["effect"] = effect
    return tol


def cmd_run(args: argparse.Namespace) -> int:
    from deepmarket.controller.options import Options
    from deepmarket.controller.runner import RunConfig, run
    from deepmarket.errors import UsageError

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kopf.objects", "kopf.activities.probe", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.api_timeout < 0:
        raise UsageError("--api-timeout: give 0 or more seconds")
    if args.git_max_mb < 1:
        raise UsageError("--git-max-mb: give at least 1 (MiB)")
    if args.webhook_listen and not args.webhook_listen.rpartition(":")[2].isdigit():
        raise UsageError(
            f"--webhook-listen {args.webhook_listen}: give HOST:PORT, e.g. 0.0.0.0:9292"
        )
    from deepmarket.controller.runner import Election
    from deepmarket.controller.workqueue import QueueSettings

    election = Election(args.lease_duration, args.renew_deadline, args.retry_period)
    if args.leader_elect and election.problems():
        raise UsageError("; ".join(election.problems()))
    try:
        queue = QueueSettings(
            workers=args.workers,
            backoff_base=args.backoff_base,
            backoff_cap=args.backoff_max,
            resync_period=args.resync_period or None,
        )
    except ValueError as err:
        raise UsageError(f"--workers/--backoff-*/--resync-period: {err}") from None
    if args.catalog and not (args.catalog / "modules.yml").is_file():
        raise UsageError(f"--catalog {args.catalog}: no modules.yml there (give the catalog root)")
    try:
        tolerations = tuple(_toleration(t) for t in args.toleration)
    except ValueError as err:
        raise UsageError(f"--toleration: {err}") from None
    try:
        cpu_tolerations = tuple(_toleration(t) for t in args.cpu_training_toleration)
    except ValueError as err:
        raise UsageError(f"--cpu-training-toleration: {err}") from None
    selector = []
    for item in args.cpu_training_node_selector:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--cpu-training-node-selector {item!r}: give KEY=VALUE")
        selector.append((key, value))
    if args.weights_image is not None and not args.weights_image.strip():
        raise UsageError("--weights-image: give an image with rclone on its PATH")
    progress_url = (args.progress_url or "").rstrip("/") or None
    if progress_url and not progress_url.startswith(("http://", "https://")):
        raise UsageError(f"--progress-url {progress_url}: give an http(s) URL")
    if progress_url and not args.progress_listen:
        raise UsageError("--progress-url needs --progress-listen (where this operator serves it)")
    options = Options(
        catalog=args.catalog,
        ingress_base=args.ingress_base,
        cluster_domain=args.cluster_domain,
        tolerations=tolerations,
        git_cache=args.git_cache,
        git_max_bytes=args.git_max_mb * 1024 * 1024,
        progress_listen=args.progress_listen,
        progress_url=progress_url,
        progress_url_by_cluster_ip=args.progress_url_by_cluster_ip,
        cpu_training_node_selector=tuple(selector),
        cpu_training_tolerations=cpu_tolerations,
    )
    if args.weights_image:
        options = replace(options, weights_image=args.weights_image)
    if args.progress_url_by_cluster_ip and not progress_url:
        raise UsageError("--progress-url-by-cluster-ip needs --progress-url")
    if args.training_tools_image:
        options = replace(options, training_tools_image=args.training_tools_image)
    run(
        RunConfig(
            options=options,
            namespaces=tuple(args.namespace),
            kubeconfig=args.kubeconfig,
            liveness=args.liveness,
            leader_elect=args.leader_elect,
            lease_namespace=args.lease_namespace,
            election=election,
            queue=queue,
            api_timeout=args.api_timeout,
            webhook_listen=args.webhook_listen,
        )
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this surface's subcommands to the `deepmarket` parser."""
    controller = sub.add_parser("controller", help="run the Kubernetes operator")
    csub = controller.add_subparsers(dest="controller_command", metavar="ACTION", required=True)
    p = csub.add_parser(
        "run",
        help="reconcile DeepModules into inference services (blocks)",
        description="Run the deepmarket operator against the current kubeconfig context "
        "(or in-cluster credentials).",
    )
    p.add_argument("--catalog", type=Path, help="catalog root (with modules.yml) for spec.module")
    p.add_argument("--namespace", "-n", action="append", default=[],
                   help="watch only this namespace (repeatable; default: all)")  # fmt: skip
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--ingress-base", default=os.environ.get("DEEPMARKET_DEPLOY_BASE_URL"),
                   help="public base URL ({id} is replaced, else /<name>/ appended); sets "
                   "status.externalURL (default: $DEEPMARKET_DEPLOY_BASE_URL)")  # fmt: skip
    p.add_argument("--cluster-domain", default="cluster.local", help="for status.url")
    p.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE][:EFFECT]",
                   help="add this toleration to every module pod (repeatable)")  # fmt: skip
    p.add_argument("--liveness", metavar="URL",
                   help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz")  # fmt: skip
    p.add_argument("--leader-elect", action="store_true",
                   help="hold a Lease so that only one of several replicas acts")  # fmt: skip
    p.add_argument("--lease-namespace", default="deepmarket-system",
                   help="namespace of the leader Lease (default: deepmarket-system)")  # fmt: skip
    p.add_argument("--lease-duration", type=float, default=15, metavar="SECONDS",
                   help="how long followers wait after they last saw the lease renewed "
                   "(default 15)")  # fmt: skip
    p.add_argument("--renew-deadline", type=float, default=10, metavar="SECONDS",
                   help="a leader that could not renew for this long stops writing and exits "
                   "(default 10; less than --lease-duration)")  # fmt: skip
    p.add_argument("--retry-period", type=float, default=2, metavar="SECONDS",
                   help="how often to renew, or to try to acquire (default 2)")  # fmt: skip
    p.add_argument("--resync-period", type=float, default=600, metavar="SECONDS",
                   help="reconcile every object again this often, plus up to 10%% jitter "
                   "(default 600; 0: never)")  # fmt: skip
    p.add_argument("--backoff-base", type=float, default=1, metavar="SECONDS",
                   help="first retry delay after a failed reconcile; doubles per failure "
                   "(default 1)")  # fmt: skip
    p.add_argument("--backoff-max", type=float, default=300, metavar="SECONDS",
                   help="longest retry delay; retries never stop (default 300)")  # fmt: skip
    p.add_argument("--api-timeout", type=float, default=120, metavar="SECONDS",
                   help="wait this long for the DeepModule API (the CRDs) to be served "
                   "before giving up (default 120)")  # fmt: skip
    p.add_argument("--workers", type=int, default=16, help="parallel reconciles (default 16)")
    p.add_argument("--webhook-listen", metavar="HOST:PORT",
                   help="serve the CatalogSource webhook receiver here, e.g. 0.0.0.0:9292 "
                   "(POST /hooks/catalogsources/NAMESPACE/NAME)")  # fmt: skip
    p.add_argument("--git-cache", type=Path, metavar="DIR",
                   help="where CatalogSources' git mirrors live "
                   "(default ~/.cache/deepmarket/git)")  # fmt: skip
    p.add_argument("--git-max-mb", type=int, default=256, metavar="MIB",
                   help="largest fetch one CatalogSource may make (default 256)")  # fmt: skip
    p.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    # TrainingRun: the image whose init container brings step.py and rclone into the pod, and
    # the progress endpoint pods report to (README: Training).
    p.add_argument("--training-tools-image", metavar="IMAGE",
                   help="image with deepmarket and rclone for TrainingRun pods "
                   "(default: the operator's own image)")  # fmt: skip
    p.add_argument("--progress-listen", metavar="HOST:PORT",
                   help="serve the TrainingRun progress endpoint at HOST:PORT")  # fmt: skip
    p.add_argument("--progress-url", metavar="URL",
                   help="the URL pods reach that endpoint at, e.g. "
                   "http://deepmarket-operator-progress.deepmarket-system.svc:8081"
                   "/progress")  # fmt: skip
    p.add_argument("--progress-url-by-cluster-ip", action="store_true",
                   help="give pods the ClusterIP of the Service --progress-url names "
                   "(<service>.<namespace>.svc) instead of its name: for clusters without "
                   "cluster DNS")  # fmt: skip
    p.add_argument("--cpu-training-node-selector", action="append", default=[],
                   metavar="KEY=VALUE", help="run TrainingRun pods that request no GPU on "
                   "nodes with this label (repeatable)")  # fmt: skip
    p.add_argument("--cpu-training-toleration", action="append", default=[],
                   metavar="KEY[=VALUE][:EFFECT]", help="and let them tolerate this taint "
                   "(repeatable)")  # fmt: skip
    p.add_argument("--weights-image", metavar="IMAGE",
                   help="image with rclone on its PATH that fetches a DeepModule's weights "
                   "(default rclone/rclone:1.68.2)")  # fmt: skip
    p.set_defaults(func=cmd_run)
