"""kopf wiring: watch DeepModules, their children and TrainingRuns; queue the owning DeepModule.

Level-based: every watch event — a DeepModule, a child, a pod, a TrainingRun a DeepModule takes
its weights from, or the full re-list kopf does when a watch restarts — just adds the owning
DeepModule to the work queue (`deepmarket.controller.workqueue`: coalescing, backoff that never
gives up, periodic resync), and the reconciler compares the whole desired state with the whole
observed state. kopf's in-memory indexes are the observed state; kopf fills them completely
before it calls any handler, so a restarted operator compares against everything that exists.

Children are found by name and kept only when their controller owner reference is this
DeepModule's uid: labels select what is watched, never whose an object is.

Only event-watching handlers and indexes are used: kopf then stores nothing on the objects
(no last-handled-configuration annotation, no finalizer), so a resync costs zero writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from deepmarket import API_GROUP, API_VERSION
from deepmarket.controller import DEEPMODULE_API, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from deepmarket.controller.compare import controller_of, resource_version
from deepmarket.controller.context import OperatorContext
from deepmarket.controller.deepmodule.builders import KNATIVE_API
from deepmarket.controller.deepmodule.reconciler import CHILD_KINDS, ChildKind, Reconciler, trim
from deepmarket.controller.workqueue import GONE, Key, Result

log = logging.getLogger("deepmarket.controller")

KIND = "DeepModule"
NsName = tuple[str, str]  # (namespace, name)

CHILD_LABELS = {MANAGED_BY_LABEL: MANAGED_BY, INSTANCE_LABEL: kopf.PRESENT}
# The children the operator writes and indexes: (apiVersion, kind) -> (plural, index id).
CHILDREN: dict[ChildKind, tuple[str, str]] = {
    ("apps/v1", "Deployment"): ("deployments", "deployment_idx"),
    ("v1", "Service"): ("services", "service_idx"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", "hpa_idx"),
    (KNATIVE_API, "Service"): ("services", "ksvc_idx"),
}
INDEX_OF: dict[ChildKind, str] = {kind: index_id for kind, (_, index_id) in CHILDREN.items()}


def pack(body: Mapping[str, Any]) -> str:
    """An object as compact JSON for the in-memory index: a parsed Deployment costs ~10x its
    JSON size in Python objects, and the index holds every child in the cluster."""
    return json.dumps(trim(body), separators=(",", ":"))


def _first(store: Iterable[Any] | None) -> Any:
    for value in store or ():
        return json.loads(value) if isinstance(value, str) else value
    return None


def deepmodule_owner(body: Mapping[str, Any]) -> str | None:
    """The name of the DeepModule that controls `body`, if one does."""
    ref = controller_of(body)
    if ref and ref.get("kind") == KIND and ref.get("apiVersion") == DEEPMODULE_API:
        return str(ref.get("name"))
    return None


def pod_instance(body: Mapping[str, Any]) -> str | None:
    """The DeepModule a pod serves: its instance label, if its ReplicaSet belongs to a child
    of that name (a user's Deployment that copies our labels does not count)."""
    labels = body.get("metadata", {}).get("labels") or {}
    instance = labels.get(INSTANCE_LABEL)
    ref = controller_of(body) or {}
    if not instance or ref.get("kind") != "ReplicaSet":
        return None
    base = str(ref.get("name", "")).rpartition("-")[0]
    # Deployment <name> → ReplicaSet <name>-<hash>; Knative: <name>-00001-deployment-<hash>.
    if base == instance or (base.startswith(f"{instance}-") and base.endswith("-deployment")):
        return str(instance)
    return None


def _pod_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    meta, status = body.get("metadata", {}), body.get("status", {})
    return {
        "metadata": {"name": meta.get("name"), "deletionTimestamp": meta.get("deletionTimestamp")},
        "status": {
            k: status.get(k)
            for k in ("phase", "conditions", "containerStatuses", "initContainerStatuses")
            if status.get(k) is not None
        },
    }


class Controller:
    """Queues DeepModules, reconciles them on a bounded thread pool, reports failures."""

    def __init__(self, reconciler: Reconciler, ctx: OperatorContext) -> None:
        self.reconciler = reconciler
        workers = ctx.queue_settings.workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="reconcile")
        self.indexes: dict[str, Any] = {}
        self.queue = ctx.work_queue("deepmodule", self.reconcile)

    def see(self, kwargs: Mapping[str, Any]) -> None:
        if not self.indexes:
            self.indexes = {k: v for k, v in kwargs.items() if k.endswith("_idx")}

    def kick(self, namespace: str, name: str) -> None:
        self.queue.add(Key(KIND, namespace, name))

    def kick_all(self) -> None:
        for ns, name in self.module_keys():
            self.kick(ns, name)

    def snapshot(
        self, key: NsName
    ) -> tuple[dict[str, Any], dict[ChildKind, Any], list[Any]] | None:
        ns, name = key
        r = self.reconciler
        dm = r.freshest(_first(self.indexes["dm_idx"].get(key)), (DEEPMODULE_API, KIND, ns, name))
        if dm is None or dm.get("metadata", {}).get("deletionTimestamp"):
            return None
        observed: dict[ChildKind, Any] = {}
        for kind in CHILD_KINDS:
            index = self.indexes.get(INDEX_OF[kind])
            cached = _first(index.get(key)) if index is not None else None
            observed[kind] = r.freshest(cached, (*kind, ns, name))
        pods = list(self.indexes["pod_idx"].get(key) or ())
        return dm, observed, pods

    def module_keys(self) -> list[NsName]:
        return list(self.indexes.get("dm_idx") or ())

    async def reconcile(self, key: Key) -> Result:  # type: ignore[override]
        if not self.indexes:
            return Result(requeue_after=1.0)  # kopf has not delivered its first event yet
        snap = self.snapshot((key.namespace, key.name))
        if snap is None:
            return GONE
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            outcome = await loop.run_in_executor(self.pool, self.reconciler.reconcile, *snap)
        except Exception as exc:
            # Say so on the DeepModule (best effort: the apiserver may be what fails).
            failures = self.queue.failures(key) + 1
            await loop.run_in_executor(
                self.pool, self.reconciler.report_failure, snap[0], exc, failures
            )
            raise
        if outcome.writes:
            took = loop.time() - started
            log.info("%s/%s: %s (%.0f ms)", *key[1:], "; ".join(outcome.writes), took * 1000)
        if outcome.problem:
            log.info("%s/%s: %s: %s", *key[1:], outcome.problem.reason, outcome.problem.message)
        return Result(requeue_after=outcome.requeue_after)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.reconciler.io.shutdown(wait=False, cancel_futures=True)


def setup(ctx: OperatorContext, reconciler: Reconciler | None = None) -> Controller:
    """The DeepModule controller's part of the operator (see `deepmarket.controller.context`)."""
    if reconciler is None:
        reconciler = Reconciler(
            ctx.kube,
            ctx.options,
            catalog=ctx.catalog,
            knative=ctx.knative,
            io_workers=ctx.queue_settings.workers * 2,
            catalogs=ctx.catalogs,
        )
    ctl = Controller(reconciler, ctx)
    register(ctx.registry, ctl)

    def catalog_changed(catalog: Any) -> None:
        reconciler.catalog = catalog
        ctl.kick_all()

    def api_changed(group_version: str, served: bool) -> None:
        if group_version == KNATIVE_API:
            reconciler.knative = served
            ctl.kick_all()

    ctx.on_catalog_change(catalog_changed)

    def catalog_synced(namespace: str, modules: frozenset[str]) -> None:
        # A CatalogSource synced a revision that changed these modules: their users resolve again.
        for ns, name in ctl.module_keys():
            dm = _first(ctl.indexes["dm_idx"].get((ns, name))) if ns == namespace else None
            if ((dm or {}).get("spec") or {}).get("module") in modules:
                ctl.kick(ns, name)

    ctx.catalogs.listeners.append(catalog_synced)
    ctx.on_api_change(api_changed)
    ctx.on_shutdown(ctl.shutdown)
    return ctl


def register(registry: kopf.OperatorRegistry, ctl: Controller) -> None:
    """Add the indexes and event handlers to `registry`."""
    r = ctl.reconciler
    dm_ref = (API_GROUP, API_VERSION, "deepmodules")
    # Index functions are `async` although they never await: kopf runs a sync handler in its
    # thread pool (a hop, a context copy and a future per watch event). Measured with
    # bench/operator.py --mode operator-only: 16.1-16.2 instead of 17.2 ms CPU per DeepModule.

    @kopf.index(*dm_ref, registry=registry, id="dm_idx")
    async def dm_idx(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[NsName, Any]:
        return {(namespace, name): pack(body)}

    @kopf.index(*dm_ref, registry=registry, id="dm_by_run_idx")
    async def dm_by_run_idx(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> Any:
        run = (spec.get("weights") or {}).get("trainingRun")
        return {(namespace, run): name} if run else {}

    def index_child(api_version: str, plural: str, index_id: str) -> None:
        group, _, version = api_version.rpartition("/")

        async def child_idx(namespace: str, name: str, body: kopf.Body, **_: Any) -> Any:
            # By the child's own name (a DeepModule's children share its name), and only
            # objects some DeepModule controls; whether it is *this* one's, the uid decides.
            return {(namespace, name): pack(body)} if deepmodule_owner(body) else {}

        kopf.index(group, version, plural, labels=CHILD_LABELS, registry=registry, id=index_id)(
            child_idx
        )

    for (api_version, _kind), (plural, index_id) in CHILDREN.items():
        index_child(api_version, plural, index_id)

    @kopf.index("", "v1", "pods", labels=CHILD_LABELS, registry=registry, id="pod_idx")
    async def pod_idx(namespace: str, body: kopf.Body, **_: Any) -> Any:
        instance = pod_instance(body)
        return {(namespace, instance): _pod_summary(body)} if instance else {}

    @kopf.on.event(*dm_ref, registry=registry, id="deepmodule_event")
    async def deepmodule_event(
        type: str | None, namespace: str, name: str, body: kopf.Body, **kwargs: Any
    ) -> None:
        ctl.see(kwargs)
        if type == "DELETED":
            r.forget(DEEPMODULE_API, KIND, namespace, name, resource_version(dict(body)))
            ctl.queue.drop(Key(KIND, namespace, name))
            return  # children go with it: Kubernetes' garbage collector follows ownerReferences
        ctl.kick(namespace, name)

    def child_handler(api_version: str, kind: str) -> Any:
        async def child_event(
            type: str | None, namespace: str, name: str, body: kopf.Body, **kwargs: Any
        ) -> None:
            ctl.see(kwargs)
            if type == "DELETED":
                r.forget(api_version, kind, namespace, name, resource_version(dict(body)))
            owner = deepmodule_owner(body)
            if owner:
                ctl.kick(namespace, owner)
            if owner != name:
                ctl.kick(namespace, name)  # a same-named object in the way, or freed

        return child_event

    for (api_version, kind), (plural, _index_id) in CHILDREN.items():
        group, _, version = api_version.rpartition("/")
        event_id = f"{'ksvc' if api_version == KNATIVE_API else kind.lower()}_event"
        kopf.on.event(group, version, plural, labels=CHILD_LABELS, registry=registry,
                      id=event_id)(child_handler(api_version, kind))  # fmt: skip

    @kopf.on.event("", "v1", "pods", labels=CHILD_LABELS, registry=registry, id="pod_event")
    async def pod_event(namespace: str, body: kopf.Body, **kwargs: Any) -> None:
        ctl.see(kwargs)
        instance = pod_instance(body)
        if instance:
            ctl.kick(namespace, instance)

    # TrainingRuns are read, never written: a DeepModule that takes its weights from one is
    # reconciled again whenever that run changes (it may have been created after the module).
    @kopf.on.event(API_GROUP, API_VERSION, "trainingruns", registry=registry,
                   id="deepmodule_trainingrun_event")  # fmt: skip
    async def trainingrun_event(namespace: str, name: str, **kwargs: Any) -> None:
        ctl.see(kwargs)
        users = ctl.indexes.get("dm_by_run_idx")
        for dm_name in (users.get((namespace, name)) if users is not None else None) or ():
            ctl.kick(namespace, dm_name)
