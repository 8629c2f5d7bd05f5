"""One TrainingRun's reconciliation: decide (pure), then write only what differs.

Writes over a run's life: create the Job, status Created, status Running, status Succeeded or
Failed, one Event at the end (plus the Job's deletion when ttlSecondsAfterFinished is set,
and at most one progress status write per `progress_every` seconds). The operator, not the
Job controller, applies the TTL: it deletes the Job only after the outcome is recorded, so a
short TTL can never lose a result, and a recorded outcome is never re-run.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from deepmarket.catalog.model import Catalog
from deepmarket.controller import DEEPMODULE_API
from deepmarket.controller.catalogstore import PENDING, CatalogStore
from deepmarket.controller.compare import newest, resource_version
from deepmarket.controller.kube import ApiError, Kube, object_path
from deepmarket.controller.training.builders import CpuPlacement, build_job
from deepmarket.controller.training.resolve import SpecProblem, Training, resolve
from deepmarket.controller.training.status import (
    TERMINAL,
    derive_status,
    is_terminal,
    quota_block,
    status_changed,
)

log = logging.getLogger("deepmarket.controller.training")

Key = tuple[str, str]
DEFAULT_TOOLS_IMAGE = "ghcr.io/deepmarket/operator:0.1.0"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class TrainingOptions:
    tools_image: str = DEFAULT_TOOLS_IMAGE
    progress_url: str | None = None  # what pods POST progress to; None: progress in logs only
    progress_every: float = 5.0  # seconds between two progress status writes of one run
    tolerations: tuple[dict[str, Any], ...] = ()
    # Runs that request no GPU go here (nodeSelector pairs, tolerations); None: anywhere.
    cpu_placement: CpuPlacement = None
    # No cluster DNS: give pods the ClusterIP of the Service progress_url names.
    progress_url_by_cluster_ip: bool = False


@dataclass
class Outcome:
    writes: list[str] = field(default_factory=list)
    recheck_in: float | None = None  # seconds until something is due (TTL, progress)


def service_of_url(url: str) -> tuple[str, str] | None:
    """(namespace, name) of a Service URL `http://<name>.<namespace>.svc[.<domain>]:port/…`."""
    host = urlsplit(url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 3 and parts[2] == "svc" and parts[0] and parts[1]:
        return parts[1], parts[0]
    return None


def with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def trim(obj: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    return out


class TrainingReconciler:
    def __init__(
        self,
        kube: Kube,
        options: TrainingOptions,
        *,
        catalog: Catalog | None = None,
        catalogs: CatalogStore | None = None,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self.kube = kube
        self.options = options
        self.catalog = catalog
        self.catalogs = catalogs  # CatalogSources' synced catalogs, as DeepModules use them
        self.clock = clock
        # Our last write responses, newer than the watch cache until it catches up.
        self.runs: dict[Key, dict[str, Any]] = {}
        self.jobs: dict[Key, dict[str, Any]] = {}
        self.progress: dict[Key, dict[str, Any]] = {}
        self.progress_written: dict[Key, float] = {}
        self._resolved_progress: str | None = None

    def fresh(self, store: dict[Key, dict[str, Any]], key: Key, cached: Any) -> Any:
        mine = store.get(key)
        if cached and mine and resource_version(dict(cached)) >= resource_version(mine):
            store.pop(key, None)
            return dict(cached)
        return newest(dict(cached) if cached else None, mine)

    def forget(self, key: Key) -> None:
        for store in (self.runs, self.jobs, self.progress, self.progress_written):
            store.pop(key, None)

    # -- one pass -------------------------------------------------------------------------
    def reconcile(
        self,
        run: Mapping[str, Any],
        job: Mapping[str, Any] | None,
        pods: list[Mapping[str, Any]],
        quotas: list[Mapping[str, Any]],
        now_s: float,
    ) -> Outcome:
        meta = run["metadata"]
        key = (meta["namespace"], meta["name"])
        outcome = Outcome()
        if job is not None and not self._owned(job, run):
            # A Job of this name from an earlier run of the same name, still being deleted.
            outcome.recheck_in = 5.0
            return outcome
        if is_terminal(run):
            self._expire(run, job, now_s, outcome)
            return outcome
        training: Training | None = None
        problem: SpecProblem | None = None
        try:
            training = resolve(run.get("spec") or {}, self.catalog_for(run))
        except SpecProblem as exc:
            problem = exc
        quota = quota_block(quotas, training, meta["namespace"])
        status = dict(run.get("status") or {})
        if job is None and status.get("jobUID"):
            job = self.kube.get("batch/v1", "Job", *key)  # gone for real, or only not seen yet?
            if job is not None:
                self.jobs[key] = trim(job)
        if job is None and training and not problem and not quota and not status.get("jobUID"):
            try:
                job = self._create_job(run, training, outcome)
            except ApiError as err:
                if err.transient:
                    raise
                # The apiserver refused the Job (e.g. a bad podTemplate): say so, no crash loop.
                problem = SpecProblem("JobRejected", f"the Job was refused: {err.message}")
        if job is not None and training is not None:
            job = self._sync_policy(job, training, outcome)
        progress = self.progress.get(key)
        new = derive_status(
            run, training=training, problem=problem, job=job, pods=pods, quota=quota,
            progress=progress, now=self.clock(),
        )  # fmt: skip
        if status_changed(run.get("status"), new):
            wrote = self.kube.apply(
                {"apiVersion": DEEPMODULE_API, "kind": "TrainingRun",
                 "metadata": {"name": key[1], "namespace": key[0]}, "status": new},
                subresource="status",
            )  # fmt: skip
            self.runs[key] = trim(wrote)
            outcome.writes.append(f"status {new.get('phase')}")
            if progress:
                self.progress_written[key] = now_s
            self._announce(run, new)
            if new.get("phase") in TERMINAL:
                self.progress.pop(key, None)
                self._expire(wrote, job, now_s, outcome)
        return outcome

    def catalog_for(self, run: Mapping[str, Any]) -> Catalog | None:
        """The local --catalog, else the synced catalog of a CatalogSource in the run's
        namespace (the same choice as for a DeepModule that no CatalogSource owns)."""
        if self.catalogs is None:
            return self.catalog
        found = self.catalogs.for_deepmodule(run, self.catalog)
        return None if found is PENDING else found

    def _owned(self, job: Mapping[str, Any], run: Mapping[str, Any]) -> bool:
        uid = run["metadata"].get("uid")
        owners = (job.get("metadata") or {}).get("ownerReferences") or []
        return any(o.get("uid") == uid for o in owners)

    def _create_job(
        self, run: Mapping[str, Any], training: Training, outcome: Outcome
    ) -> dict[str, Any] | None:
        meta = run["metadata"]
        key = (meta["namespace"], meta["name"])
        base = self._progress_base()
        token = secrets.token_urlsafe(24) if base else None
        body = build_job(
            run, training, tools_image=self.options.tools_image,
            tolerations=self.options.tolerations, cpu_placement=self.options.cpu_placement,
            progress_url=f"{base}/{key[0]}/{key[1]}" if base else None, token=token,
        )  # fmt: skip
        try:
            job = self.kube.request("POST", object_path("batch/v1", "Job", key[0]), body=body)
        except ApiError as err:
            if err.status != 409:
                raise
            job = self.kube.get("batch/v1", "Job", *key)
            if job is None or not self._owned(job, run):
                outcome.recheck_in = 5.0
                return None
        self.jobs[key] = trim(job)
        outcome.writes.append(f"created Job/{key[1]}")
        return job

    def _progress_base(self) -> str | None:
        """The progress URL for a new Job; by ClusterIP when the cluster has no DNS."""
        base = self.options.progress_url
        if not base or not self.options.progress_url_by_cluster_ip:
            return base
        if self._resolved_progress is None:
            service = service_of_url(base)
            if service is None:
                log.warning("--progress-url %s names no <service>.<namespace>.svc", base)
                return base
            found = self.kube.get("v1", "Service", service[0], service[1])
            ip = ((found or {}).get("spec") or {}).get("clusterIP")
            if not ip or ip == "None":
                log.warning("progress Service %s/%s has no ClusterIP yet", *service)
                return base  # this Job's pod reports to the name; later Jobs get the IP
            self._resolved_progress = with_host(base, ip)
        return self._resolved_progress

    def _sync_policy(
        self, job: Mapping[str, Any], training: Training, outcome: Outcome
    ) -> Mapping[str, Any]:
        """suspend and activeDeadlineSeconds are the Job fields that may change after creation."""
        spec = job.get("spec") or {}
        want: dict[str, Any] = {}
        if bool(spec.get("suspend")) != training.policy.suspend:
            want["suspend"] = training.policy.suspend
        deadline = training.policy.active_deadline_s
        if deadline and spec.get("activeDeadlineSeconds") != deadline:
            want["activeDeadlineSeconds"] = int(deadline)
        if not want:
            return job
        meta = job["metadata"]
        patched = self.kube.request(
            "PATCH", object_path("batch/v1", "Job", meta["namespace"], meta["name"]),
            body={"spec": want}, content_type="application/merge-patch+json",
        )  # fmt: skip
        self.jobs[(meta["namespace"], meta["name"])] = trim(patched)
        outcome.writes.append("Job " + ", ".join(f"{k}={v}" for k, v in want.items()))
        return patched

    def _expire(
        self, run: Mapping[str, Any], job: Mapping[str, Any] | None, now_s: float, outcome: Outcome
    ) -> None:
        """ttlSecondsAfterFinished: delete the finished Job once the outcome is recorded."""
        ttl = ((run.get("spec") or {}).get("runPolicy") or {}).get("ttlSecondsAfterFinished")
        if ttl is None or job is None:
            return
        done = parse_time((run.get("status") or {}).get("completionTime")) or now_s
        due = done + int(ttl) - now_s
        if due > 0:
            outcome.recheck_in = due
            return
        meta = job["metadata"]
        self.kube.delete("batch/v1", "Job", meta["namespace"], meta["name"], meta["uid"])
        self.jobs.pop((meta["namespace"], meta["name"]), None)
        outcome.writes.append(f"deleted Job/{meta['name']} (ttlSecondsAfterFinished)")

    def _announce(self, run: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        phase = new.get("phase")
        if phase not in TERMINAL or (run.get("status") or {}).get("phase") == phase:
            return
        cond = next((c for c in new.get("conditions") or [] if c["type"] == phase), {})
        kind = "Normal" if phase == "Succeeded" else "Warning"
        try:
            self.kube.event(
                {**run, "apiVersion": DEEPMODULE_API, "kind": "TrainingRun"},
                kind, cond.get("reason", phase), cond.get("message", phase),
            )  # fmt: skip
        except ApiError as err:
            log.warning("could not record an Event: %s", err)

    # -- progress ----------------------------------------------------------------------------
    def record_progress(self, key: Key, report: Mapping[str, Any], now_s: float) -> float:
        """Keep the latest report; return seconds until its status write is allowed (0: now)."""
        current = dict(self.progress.get(key) or {})
        for name in ("percent", "epoch", "epochs", "etaSeconds", "message"):
            if name in report:
                current[name] = report[name]
        if "phase" in report:
            current["step"] = report["phase"]
        if isinstance(report.get("metrics"), Mapping):
            current["metrics"] = dict(report["metrics"])
        current["updatedAt"] = self.clock()
        self.progress[key] = current
        last = self.progress_written.get(key)
        if last is None:
            return 0.0
        return max(0.0, last + self.options.progress_every - now_s)
