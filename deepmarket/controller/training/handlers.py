"""kopf wiring for TrainingRuns: watch runs, their Jobs and pods and the namespaces' quotas,
and reconcile the owning run (level-based, like DeepModule's handlers).

Every event only "kicks" its run into the operator's shared work queue (coalescing, retries
with back-off that never give up, periodic resync); reconciles run on a bounded thread pool.
kopf's indexes are the observed state and are complete before any handler runs, so a
restarted operator sees every Job that exists.

The progress endpoint (`POST /progress/<namespace>/<name>`, bearer token) is served by every
replica when `--progress-listen` is given (a follower forwards to the leader, leaderhttp.py): a
pod reports to it without any cluster credential, and each report only schedules a status
write, at most one per `progress_every` seconds per run.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from deepmarket import API_GROUP, API_VERSION
from deepmarket.controller import MANAGED_BY, MANAGED_BY_LABEL
from deepmarket.controller.context import OperatorContext
from deepmarket.controller.training.builders import RUN_LABEL, job_token
from deepmarket.controller.training.reconciler import TrainingOptions, TrainingReconciler, trim
from deepmarket.controller.workqueue import GONE, Result, WorkQueue
from deepmarket.controller.workqueue import Key as QKey

log = logging.getLogger("deepmarket.controller.training")

Key = tuple[str, str]
KIND = "TrainingRun"
JOB_LABELS = {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: kopf.PRESENT}
MAX_REPORT_BYTES = 16 * 1024


def _first(store: Iterable[Any] | None) -> Any:
    for value in store or ():
        return json.loads(value) if isinstance(value, str) else value
    return None


def pack(body: Mapping[str, Any]) -> str:
    return json.dumps(trim(body), separators=(",", ":"))


def pod_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "creationTimestamp": meta.get("creationTimestamp"),
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        "status": {
            k: status.get(k)
            for k in ("phase", "conditions", "containerStatuses", "initContainerStatuses")
            if status.get(k) is not None
        },
    }


class TrainingController:
    """Reconciles TrainingRuns through the operator's shared work queue (coalescing, backoff
    that never gives up, periodic resync); reconciles run on a bounded thread pool."""

    def __init__(self, reconciler: TrainingReconciler, *, workers: int = 8) -> None:
        self.reconciler = reconciler
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="training")
        self.indexes: dict[str, Any] = {}
        self.queue: WorkQueue | None = None

    def attach(self, queue: WorkQueue) -> None:
        self.queue = queue

    def see(self, kwargs: Mapping[str, Any]) -> None:
        if not self.indexes:
            self.indexes = {k: v for k, v in kwargs.items() if k.startswith("tr_")}

    def snapshot(self, key: Key) -> tuple[Any, ...] | None:
        if not self.indexes:
            return None
        r = self.reconciler
        run = r.fresh(r.runs, key, _first(self.indexes["tr_runs"].get(key)))
        if run is None or (run.get("metadata") or {}).get("deletionTimestamp"):
            return None
        job = r.fresh(r.jobs, key, _first(self.indexes["tr_jobs"].get(key)))
        pods = list(self.indexes["tr_pods"].get(key) or ())
        quotas = [json.loads(q) for q in self.indexes["tr_quotas"].get(key[0]) or ()]
        return run, job, pods, quotas

    def run_keys(self, namespace: str | None = None) -> list[Key]:
        keys = list(self.indexes.get("tr_runs") or ())
        return [k for k in keys if namespace is None or k[0] == namespace]

    def kick(self, key: Key, delay: float = 0.0) -> None:
        if self.queue is not None:
            self.queue.add_after(QKey(KIND, *key), delay)

    async def reconcile(self, qkey: Any) -> Result:
        key = (qkey.namespace, qkey.name)
        snap = self.snapshot(key)
        if snap is None:
            return GONE if self.indexes else Result(requeue_after=1.0)
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(
            self.pool, self.reconciler.reconcile, *snap, time.time()
        )
        if outcome.writes:
            log.info("TrainingRun %s/%s: %s", *key, "; ".join(outcome.writes))
        if outcome.recheck_in is not None:
            return Result(requeue_after=max(0.5, outcome.recheck_in))
        return Result()

    # -- progress ----------------------------------------------------------------------------
    def accept_progress(self, key: Key, token: str, report: Mapping[str, Any]) -> int:
        """HTTP status for a progress report: 204 taken, 403 wrong token, 404 unknown run,
        503 not ready yet (the watches of a new leader are still filling)."""
        if not self.indexes:
            return 503
        job = self.reconciler.fresh(
            self.reconciler.jobs, key, _first(self.indexes.get("tr_jobs", {}).get(key))
        )
        expected = job_token(job)
        if not expected:
            return 404
        if not hmac.compare_digest(expected.encode(), token.encode()):
            return 403
        self.kick(key, self.reconciler.record_progress(key, report, time.time()))
        return 204

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def progress_handler(ctl: TrainingController) -> Any:
    """`POST /progress/<namespace>/<name>` with the run's bearer token (aiohttp handler)."""
    from aiohttp import web

    async def post(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return web.json_response(
                {"message": "Authorization: Bearer <token> needed"}, status=401
            )
        if (request.content_length or 0) > MAX_REPORT_BYTES:
            return web.json_response({"message": "report too large"}, status=413)
        try:
            report = json.loads(await request.content.read(MAX_REPORT_BYTES))
        except ValueError:
            return web.json_response({"message": "body must be a JSON object"}, status=400)
        if not isinstance(report, dict):
            return web.json_response({"message": "body must be a JSON object"}, status=400)
        key = (request.match_info["namespace"], request.match_info["name"])
        code = ctl.accept_progress(key, auth[len("Bearer ") :], report)
        if code == 204:
            return web.Response(status=204)
        if code == 503:
            return web.json_response(
                {"message": "the operator is starting; retry"},
                status=503, headers={"Retry-After": "2"},
            )  # fmt: skip
        return web.json_response({"message": "unknown run or wrong token"}, status=code)

    return post


def setup(ctx: OperatorContext) -> TrainingController:
    """Register the TrainingRun indexes, handlers, work queue and progress endpoint."""
    o = ctx.options
    options = TrainingOptions(
        tools_image=o.training_tools_image,
        progress_url=(o.progress_url or "").rstrip("/") or None,
        tolerations=o.tolerations,
        cpu_placement=(o.cpu_training_node_selector, o.cpu_training_tolerations)
        if o.cpu_training_node_selector or o.cpu_training_tolerations
        else None,
        progress_url_by_cluster_ip=o.progress_url_by_cluster_ip,
    )
    reconciler = TrainingReconciler(ctx.kube, options, catalog=ctx.catalog, catalogs=ctx.catalogs)
    ctl = TrainingController(reconciler, workers=ctx.queue_settings.workers)
    ctl.attach(ctx.work_queue("trainingrun", ctl.reconcile))
    ctx.on_catalog_change(lambda catalog: setattr(reconciler, "catalog", catalog))

    def catalog_synced(namespace: str, _ids: frozenset[str]) -> None:
        # A CatalogSource's catalog arrived or changed: runs waiting for it may start.
        for key in ctl.run_keys(namespace):
            ctl.kick(key)

    ctx.catalogs.listeners.append(catalog_synced)
    ctx.on_shutdown(ctl.shutdown)
    registry = ctx.registry
    tr = (API_GROUP, API_VERSION, "trainingruns")
    r = ctl.reconciler

    @kopf.index(*tr, registry=registry, id="tr_runs")
    async def tr_runs(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
        return {(namespace, name): pack(body)}

    @kopf.index("batch", "v1", "jobs", labels=JOB_LABELS, registry=registry, id="tr_jobs")
    async def tr_jobs(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
        return {(namespace, labels[RUN_LABEL]): pack(body)}

    @kopf.index("", "v1", "pods", labels=JOB_LABELS, registry=registry, id="tr_pods")
    async def tr_pods(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
        return {(namespace, labels[RUN_LABEL]): pod_summary(body)}

    @kopf.index("", "v1", "resourcequotas", registry=registry, id="tr_quotas")
    async def tr_quotas(namespace: str, body: kopf.Body, **_: Any) -> Any:
        return {namespace: json.dumps({"metadata": {"name": body["metadata"]["name"]},
                                       "status": dict(body.get("status") or {})})}  # fmt: skip

    @kopf.on.event(*tr, registry=registry, id="trainingrun_event")
    async def trainingrun_event(type: str | None, namespace: str, name: str, **kwargs: Any) -> None:
        ctl.see(kwargs)
        if type == "DELETED":
            r.forget((namespace, name))  # the Job and pods go with it (ownerReferences)
            if ctl.queue is not None:
                ctl.queue.drop(QKey(KIND, namespace, name))
            return
        ctl.kick((namespace, name))

    async def child_event(
        type: str | None, namespace: str, labels: kopf.Labels, **kwargs: Any
    ) -> None:
        ctl.see(kwargs)
        ctl.kick((namespace, labels[RUN_LABEL]))

    kopf.on.event("batch", "v1", "jobs", labels=JOB_LABELS, registry=registry,
                  id="tr_job_event")(child_event)  # fmt: skip
    kopf.on.event("", "v1", "pods", labels=JOB_LABELS, registry=registry,
                  id="tr_pod_event")(child_event)  # fmt: skip

    @kopf.on.event("", "v1", "resourcequotas", registry=registry, id="tr_quota_event")
    async def quota_event(namespace: str, **kwargs: Any) -> None:
        ctl.see(kwargs)
        # Freed GPUs in the namespace may let a waiting run start.
        for key in ctl.run_keys(namespace):
            ctl.kick(key)

    if o.progress_listen:
        # Served by every replica on --progress-listen; followers forward to the leader.
        ctx.add_leader_route("POST", "/progress/{namespace}/{name}", progress_handler(ctl))

    return ctl
