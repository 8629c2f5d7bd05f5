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
from deepmarket.controller import DEEPMODULE_API
from deepmarket.controller.compare import newest, resource_version, up_to_date, with_hash
from deepmarket.controller.deepmodule.builders import KNATIVE_API, Plan, desired_children
from deepmarket.controller.deepmodule.resolve import Runtime, SpecProblem, resolve
from deepmarket.controller.deepmodule.status import derive_status, status_changed
from deepmarket.controller.kube import ApiError, Kube
from deepmarket.controller.options import Options

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


PAST = {"apply": "applied", "delete": "deleted"}


@dataclass(frozen=True)
class Write:
    verb: str  # "apply" or "delete"
    kind: ChildKind
    obj: dict[str, Any]


def plan_writes(
    plan: Plan, observed: Mapping[ChildKind, Mapping[str, Any] | None], owner_uid: str
) -> list[Write]:
    """Applies for children that differ from what runs, deletes for owned ones no longer wanted."""
    writes: list[Write] = []
    wanted = set()
    for obj in plan.objects:
        kind = kind_of(obj)
        wanted.add(kind)
        desired = with_hash(obj)
        if not up_to_date(dict(observed.get(kind) or {}) or None, desired):
            writes.append(Write("apply", kind, desired))
    for kind, obj in observed.items():
        if kind in wanted or not obj:
            continue
        owners = obj.get("metadata", {}).get("ownerReferences") or []
        if any(o.get("uid") == owner_uid and o.get("controller") for o in owners):
            writes.append(Write("delete", kind, dict(obj)))
    return writes


def trim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Drop what we never compare (managedFields is most of an object's size)."""
    out = dict(obj)
    meta = dict(out.get("metadata", {}))
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
    ) -> None:
        self.kube = kube
        self.options = options
        self.catalog = catalog
        self.knative = knative
        self.clock = clock
        # Child writes of one reconcile run concurrently, and Events are posted in the
        # background, so a reconcile costs two round trips (children, then status).
        self.io = ThreadPoolExecutor(io_workers, thread_name_prefix="kube-io")
        # (apiVersion, kind, namespace, name) → the object as our last write returned it.
        self.written: dict[tuple[str, str, str, str], dict[str, Any]] = {}

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
        observed = dict(observed)
        runtime: Runtime | None = None
        plan: Plan | None = None
        try:
            runtime = resolve(
                dm.get("spec") or {}, self.catalog, training_runs=self._training_runs(dm)
            )
            plan = desired_children(dm, runtime, self.options, knative=self.knative)
        except SpecProblem as problem:
            outcome.problem = problem
        if plan is not None:
            writes = plan_writes(plan, observed, meta["uid"])
            # Children are independent: write them concurrently (one round trip, not three).
            futures = [(w, self.io.submit(self._execute, w)) for w in writes]
            rejected: ApiError | None = None
            for write, future in futures:
                try:
                    observed[write.kind] = future.result()
                    outcome.writes.append(f"{PAST[write.verb]} {describe(write.kind)}/{name}")
                except ApiError as err:
                    if err.transient:
                        raise
                    rejected = err
            if rejected is not None:
                # The apiserver refused a child (e.g. a bad podTemplate): report, never crash-loop.
                outcome.problem = SpecProblem("ApplyRejected", rejected.message)
                plan = None
        status = derive_status(
            dm,
            options=self.options,
            now=self.clock(),
            runtime=runtime,
            plan=plan,
            problem=outcome.problem,
            deployment=observed.get(("apps/v1", "Deployment")),
            ksvc=observed.get((KNATIVE_API, "Service")),
            pods=pods,
        )
        if outcome.writes:
            self._event(dm, "Normal", "Applied", "; ".join(outcome.writes))
        if status_changed(dm.get("status"), status):
            self._write_status(dm, status)
            outcome.status_written = True
            self._announce(dm, status)
        return outcome

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
        if write.verb == "apply":
            result = self.kube.apply(write.obj)
            self.remember(result)
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
            self.kube.event(dm, type_, reason, message)
        except ApiError as err:  # an Event is a courtesy; never fail a reconcile for one
            log.warning("could not record event on %s: %s", dm["metadata"]["name"], err)
