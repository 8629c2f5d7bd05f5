"""One DeepModule's reconciliation: decide (pure), then write only what differs.

`plan_writes` is the decision — which children to apply or delete, given the desired plan and
the newest copy of each observed child. `Reconciler.reconcile` is the shell around it: it
applies, records every write response (so a watch cache that lags behind our own write never
triggers a second, identical write), derives status and writes it only when it changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deepmarket.catalog.model import Catalog
from deepmarket.controller import DEEPMODULE_API, FIELD_MANAGER
from deepmarket.controller.catalogstore import PENDING, CatalogStore
from deepmarket.controller.compare import (
    controlled_by,
    controller_of,
    foreign_entries,
    newest,
    resource_version,
    revert_patch,
    up_to_date,
    with_hash,
)
from deepmarket.controller.deepmodule.builders import KNATIVE_API, Plan, desired_children
from deepmarket.controller.deepmodule.resolve import Runtime, SpecProblem, resolve
from deepmarket.controller.deepmodule.status import (
    deployment_trouble,
    derive_status,
    failing_status,
    status_changed,
)
from deepmarket.controller.kube import ApiError, EventRecorder, Kube
from deepmarket.controller.options import Options
from deepmarket.controller.tenancy import gpu_consumers, parse_quota_exceeded

log = logging.getLogger("deepmarket.controller")

ChildKind = tuple[str, str]  # (apiVersion, kind)
CHILD_KINDS: tuple[ChildKind, ...] = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    (KNATIVE_API, "Service"),
)


def kind_of(obj: Mapping[str, Any]) -> ChildKind:
    return (obj["apiVersion"], obj["kind"])


def describe(kind: ChildKind) -> str:
    return "KnativeService" if kind[0] == KNATIVE_API else kind[1]


PAST = {"apply": "applied", "delete": "deleted", "revert": "reverted hand edits of"}
# Field managers that are us: our applies, and the manager that hands `replicas` to an HPA.
HANDOVER_MANAGER = f"{FIELD_MANAGER}-handover"
OWN_MANAGERS = frozenset({FIELD_MANAGER, HANDOVER_MANAGER})


@dataclass(frozen=True)
class Write:
    verb: str  # "apply", "delete" or "revert" (a JSON patch removing others' additions)
    kind: ChildKind
    obj: dict[str, Any]
    patch: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class Conflict:
    """A same-named object in the way that this DeepModule does not control."""

    kind: ChildKind
    name: str
    owner: dict[str, Any] | None  # its controller reference, if any

    @property
    def stale_self(self) -> bool:
        """Our own child from a deleted DeepModule of the same name, being garbage-collected."""
        o = self.owner or {}
        return o.get("kind") == "DeepModule" and o.get("name") == self.name

    def message(self) -> str:
        what = f"{describe(self.kind)} {self.name!r}"
        if self.owner:
            by = f"controlled by {self.owner.get('kind')} {self.owner.get('name')!r}"
        else:
            by = "not created by this DeepModule"
        return (
            f"{what} already exists in this namespace, {by}; the operator never adopts or "
            "overwrites it: delete or rename it, or give the DeepModule another name"
        )


def classify(
    observed: Mapping[ChildKind, Mapping[str, Any] | None], owner_uid: str
) -> tuple[dict[ChildKind, dict[str, Any] | None], list[tuple[ChildKind, dict[str, Any]]]]:
    """Split observed children into ours (controller owner reference = this uid) and others."""
    ours: dict[ChildKind, dict[str, Any] | None] = {}
    others = []
    for kind, obj in observed.items():
        if obj and not controlled_by(obj, owner_uid):
            others.append((kind, dict(obj)))
            ours[kind] = None
        else:
            ours[kind] = dict(obj) if obj else None
    return ours, others


def plan_writes(
    plan: Plan, observed: Mapping[ChildKind, Mapping[str, Any] | None], owner_uid: str
) -> list[Write]:
    """Reverts of others' edits, applies for children that differ from what runs, deletes for
    owned ones no longer wanted. `observed` must hold only children this uid controls."""
    writes: list[Write] = []
    wanted = set()
    for obj in plan.objects:
        kind = kind_of(obj)
        wanted.add(kind)
        desired = with_hash(obj)
        have = dict(observed.get(kind) or {}) or None
        if have is not None:
            ops, paths = revert_patch(have, desired, OWN_MANAGERS)
            if ops:
                writes.append(Write("revert", kind, have, ops, ", ".join(paths)))
        if not up_to_date(have, desired):
            uid = (have or {}).get("metadata", {}).get("uid")
            if uid:
                # The apiserver treats a uid in the body as a precondition: the write fails
                # (409) instead of landing on a same-named object that replaced ours.
                desired = {**desired, "metadata": {**desired["metadata"], "uid": uid}}
            writes.append(Write("apply", kind, desired))
    for kind, obj in observed.items():
        if kind in wanted or not obj:
            continue
        if controlled_by(obj, owner_uid):
            writes.append(Write("delete", kind, dict(obj)))
    return writes


def handover(
    plan: Plan, observed: Mapping[ChildKind, Mapping[str, Any] | None], floor: int
) -> dict[str, Any] | None:
    """When a fixed count becomes an autoscaler's, the apply config for `spec.replicas` that a
    second field manager makes before ours drops the field (the hand-over the server-side apply
    docs describe): the count stays what runs (at least the new minimum) instead of falling to
    the default of 1 until the HPA raises it again."""
    want = next((o for o in plan.objects if kind_of(o) == ("apps/v1", "Deployment")), None)
    have = observed.get(("apps/v1", "Deployment"))
    hpa = observed.get(("autoscaling/v2", "HorizontalPodAutoscaler"))
    if want is None or have is None or hpa is not None or "replicas" in want["spec"]:
        return None
    if not any(kind_of(o) == ("autoscaling/v2", "HorizontalPodAutoscaler") for o in plan.objects):
        return None
    current = have.get("spec", {}).get("replicas")
    if current is None:
        return None
    meta = have["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
        "spec": {"replicas": max(int(current), floor)},
    }


def trim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Drop what we never compare: of managedFields (most of an object's size) only others'
    edits of the spec stay, the evidence of hand edits to revert."""
    out = dict(obj)
    meta = dict(out.get("metadata", {}))
    if meta.get("managedFields"):
        foreign = foreign_entries(out, OWN_MANAGERS)
        if foreign:
            meta["managedFields"] = foreign
        else:
            meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outcome:
    writes: list[str] = field(default_factory=list)
    status_written: bool = False
    problem: SpecProblem | None = None
    requeue_after: float | None = None


# Failures in a row before the DeepModule's status says the operator keeps failing: one-off
# conflicts (409) and restarts heal by themselves and need no one's attention.
REPORT_FAILURES_AFTER = 3


class Reconciler:
    """Holds what must outlive one reconcile: the catalog and our own recent write responses."""

    def __init__(
        self,
        kube: Kube,
        options: Options,
        *,
        catalog: Catalog | None = None,
        knative: bool = False,
        clock: Callable[[], str] = now_iso,
        io_workers: int = 32,
        catalogs: CatalogStore | None = None,
    ) -> None:
        self.kube = kube
        self.options = options
        self.catalog = catalog
        self.catalogs = catalogs  # the synced catalogs (CatalogSources), beside the local one
        self.knative = knative
        self.clock = clock
        # Child writes of one reconcile run concurrently, and Events are posted in the
        # background, so a reconcile costs two round trips (children, then status).
        self.io = ThreadPoolExecutor(io_workers, thread_name_prefix="kube-io")
        # (apiVersion, kind, namespace, name) → the object as our last write returned it.
        self.written: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.events = EventRecorder(kube)
        # (namespace, name) → the Deployment generation our last write of it produced.
        self.applied_generation: dict[tuple[str, str], int] = {}

    # -- the newest-known view ----------------------------------------------------------
    def remember(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        key = (obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        self.written[key] = trim(obj)

    def forget(self, api_version: str, kind: str, namespace: str, name: str, rv: int) -> None:
        """A watch said the object is gone: drop our copy unless it is newer than the deletion."""
        key = (api_version, kind, namespace, name)
        if key in self.written and resource_version(self.written[key]) <= rv:
            del self.written[key]
        if kind in ("DeepModule", "Deployment"):
            self.applied_generation.pop((namespace, name), None)

    def freshest(self, cached: Mapping[str, Any] | None, key: tuple[str, str, str, str]) -> Any:
        """The newer of the watch cache's copy and our last write's response."""
        mine = self.written.get(key)
        if cached and mine and resource_version(dict(cached)) >= resource_version(mine):
            self.written.pop(key, None)  # the watch caught up: stop holding a second copy
            return dict(cached)
        return newest(dict(cached) if cached else None, mine)

    # -- one pass -------------------------------------------------------------------------
    def reconcile(
        self,
        dm: Mapping[str, Any],
        observed: Mapping[ChildKind, Mapping[str, Any] | None],
        pods: list[Mapping[str, Any]],
    ) -> Outcome:
        meta = dm["metadata"]
        name = meta["name"]
        outcome = Outcome()
        runtime: Runtime | None = None
        plan: Plan | None = None
        catalog = self.catalog
        if self.catalogs is not None:
            catalog = self.catalogs.for_deepmodule(dm, self.catalog)
            if catalog is PENDING:  # its CatalogSource has not synced since the start: wait
                return outcome
        try:
            runtime = resolve(dm.get("spec") or {}, catalog, training_runs=self._training_runs(dm))
            plan = desired_children(dm, runtime, self.options, knative=self.knative)
        except SpecProblem as problem:
            outcome.problem = problem
        ours: dict[ChildKind, dict[str, Any] | None] = {k: None for k in CHILD_KINDS}
        if plan is not None:
            observed = self._look_up_missing(plan, observed)
            ours, others = classify(observed, meta["uid"])
            conflicts = [
                Conflict(kind, name, controller_of(obj))
                for kind, obj in others
                if obj.get("metadata", {}).get("name") == name
            ]
            if conflicts:
                # Never adopt, never overwrite: write no child while one is in the way.
                first = conflicts[0]
                if first.stale_self:
                    outcome.requeue_after = 2.0  # the old one is being garbage-collected
                    outcome.problem = SpecProblem(
                        "Deploying", f"waiting for the deleted DeepModule's {first.message()}"
                    )
                else:
                    outcome.problem = SpecProblem("ResourceExists", first.message())
                plan = None
        if plan is not None and runtime is not None:
            hand = handover(plan, ours, max(1, runtime.scaling.min))
            if hand is not None:
                result = self.kube.apply(hand, field_manager=HANDOVER_MANAGER)
                self.remember(result)
                ours[("apps/v1", "Deployment")] = trim(result)
                outcome.writes.append(f"handed replicas of Deployment/{name} to the autoscaler")
            writes = plan_writes(plan, ours, meta["uid"])
            rejected = self._perform(writes, ours, outcome, name)
            if rejected is not None:
                # The apiserver refused a child (e.g. a bad podTemplate): report, never crash-loop.
                outcome.problem = SpecProblem("ApplyRejected", rejected.message)
                plan = None
        deployment = ours.get(("apps/v1", "Deployment"))
        status = derive_status(
            dm,
            options=self.options,
            now=self.clock(),
            runtime=runtime,
            plan=plan,
            problem=outcome.problem,
            deployment=deployment,
            ksvc=ours.get((KNATIVE_API, "Service")),
            pods=pods,
            applied_generation=self.applied_generation.get((meta["namespace"], name)),
            gpu_users=self._gpu_users(meta["namespace"], deployment),
        )
        if outcome.writes:
            self._event(dm, "Normal", "Applied", "; ".join(outcome.writes))
        if status_changed(dm.get("status"), status):
            self._write_status(dm, status)
            outcome.status_written = True
            self._announce(dm, status)
        return outcome

    def _look_up_missing(
        self, plan: Plan, observed: Mapping[ChildKind, Mapping[str, Any] | None]
    ) -> dict[ChildKind, Mapping[str, Any] | None]:
        """Children we want but have not seen: read them, so an object that exists but is not
        ours (no labels, so not watched) is found before an apply would take it over."""
        out = dict(observed)
        missing = [kind_of(o) for o in plan.objects if not observed.get(kind_of(o))]
        meta = plan.objects[0]["metadata"] if plan.objects else {}
        futures = [
            (kind, self.io.submit(self.kube.metadata, *kind, meta["namespace"], meta["name"]))
            for kind in missing
        ]
        for kind, future in futures:
            found = future.result()
            if found is not None:
                # Metadata only: enough to tell whose it is. If it is ours after all (the watch
                # lags), the missing spec makes the apply go ahead, which changes nothing.
                out[kind] = {**trim(found), "apiVersion": kind[0], "kind": kind[1]}
        return out

    def _perform(
        self,
        writes: list[Write],
        ours: dict[ChildKind, dict[str, Any] | None],
        outcome: Outcome,
        name: str,
    ) -> ApiError | None:
        """Write; children are independent: concurrently (one round trip, not three)."""
        by_kind: dict[ChildKind, list[Write]] = {}
        for w in writes:
            by_kind.setdefault(w.kind, []).append(w)
        futures = [
            (kind, ws, self.io.submit(self._execute_all, ws)) for kind, ws in by_kind.items()
        ]
        rejected: ApiError | None = None
        for kind, ws, future in futures:
            try:
                ours[kind] = future.result()
            except ApiError as err:
                if err.transient:
                    raise
                rejected = err
                continue
            for w in ws:
                detail = f" ({w.detail})" if w.detail else ""
                outcome.writes.append(f"{PAST[w.verb]} {describe(kind)}/{name}{detail}")
        return rejected

    def _execute_all(self, writes: list[Write]) -> dict[str, Any] | None:
        result = None
        for write in writes:
            result = self._execute(write)
        return result

    def report_failure(self, dm: Mapping[str, Any], error: Exception, failures: int) -> None:
        """After a few failed reconciles in a row, say on the DeepModule that the operator
        keeps failing and why (the message stays the same across retries: no write per retry)."""
        if failures < REPORT_FAILURES_AFTER:
            return
        status = failing_status(dm, f"{error}", self.clock())
        if not status_changed(dm.get("status"), status):
            return
        try:
            self._write_status(dm, status)
            self._announce(dm, status)
        except ApiError as err:
            log.warning("could not report the failure on %s: %s", dm["metadata"]["name"], err)

    def _gpu_users(self, namespace: str, deployment: Mapping[str, Any] | None) -> Any:
        """Who holds the namespace's GPUs, read only when a quota refusal is to be explained."""
        trouble = deployment_trouble(deployment)
        if trouble is None or parse_quota_exceeded(trouble.message) is None:
            return None
        try:
            pods = self.kube.request(
                "GET",
                f"/api/v1/namespaces/{namespace}/pods",
                query=[("fieldSelector", "status.phase!=Succeeded,status.phase!=Failed")],
            )
        except ApiError as err:  # the numbers alone still explain it
            log.warning("could not list pods in %s for the quota message: %s", namespace, err)
            return None
        return gpu_consumers(pods.get("items") or [])

    def _training_runs(self, dm: Mapping[str, Any]) -> dict[str, Any]:
        run = ((dm.get("spec") or {}).get("weights") or {}).get("trainingRun")
        if not run:
            return {}
        meta = dm["metadata"]
        found = self.kube.get(DEEPMODULE_API, "TrainingRun", meta["namespace"], run)
        return {run: found} if found else {}

    def _execute(self, write: Write) -> dict[str, Any] | None:
        """Perform one write; return the child as it now is (None once deleted)."""
        meta = write.obj["metadata"]
        if write.verb in ("revert", "apply"):
            if write.verb == "revert":
                result = self.kube.json_patch(
                    *write.kind, meta["namespace"], meta["name"], write.patch
                )
            else:
                result = self.kube.apply(write.obj)
            self.remember(result)
            if write.kind == ("apps/v1", "Deployment"):
                done = result.get("metadata", {})
                self.applied_generation[(meta["namespace"], meta["name"])] = int(
                    done.get("generation") or 0
                )
            return trim(result)
        self.kube.delete(*write.kind, meta["namespace"], meta["name"], meta["uid"])
        self.written.pop((*write.kind, meta["namespace"], meta["name"]), None)
        return None

    def _write_status(self, dm: Mapping[str, Any], status: dict[str, Any]) -> None:
        meta = dm["metadata"]
        body = {
            "apiVersion": DEEPMODULE_API,
            "kind": "DeepModule",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "status": status,
        }
        try:
            self.remember(self.kube.apply(body, subresource="status"))
        except ApiError as err:
            if err.status != 404:  # deleted meanwhile: nothing left to report on
                raise

    def _announce(self, dm: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        """A Warning Event when the module turns Degraded (with the reason), once per change."""
        before = {c["type"]: c for c in (dm.get("status") or {}).get("conditions") or []}
        for cond in status.get("conditions", []):
            if cond["type"] != "Degraded" or cond["status"] != "True":
                continue
            old = before.get("Degraded")
            if not old or old.get("status") != "True" or old.get("reason") != cond["reason"]:
                self._event(dm, "Warning", cond["reason"], cond["message"])

    def _event(self, dm: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.io.submit(self._post_event, dict(dm), type_, reason, message)

    def _post_event(self, dm: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            self.events.record(dm, type_, reason, message)
        except ApiError as err:  # an Event is a courtesy; never fail a reconcile for one
            log.warning("could not record event on %s: %s", dm["metadata"]["name"], err)
