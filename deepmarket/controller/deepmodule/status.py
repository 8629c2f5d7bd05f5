"""Observed children → DeepModule status (pure).

Conditions follow metav1.Condition. `Ready` is True only when every wanted replica passes the
readiness probe *and* nothing is wrong — a crash-looping new revision makes it False even if old
replicas still answer (KServe keeps Ready=True there; that hides broken rollouts). Messages only
carry numbers that matter (ready/wanted), so intermediate watch events produce the same status
and cost no write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deepmarket.controller.deepmodule.builders import Plan, external_url, internal_url
from deepmarket.controller.deepmodule.resolve import Runtime, SpecProblem
from deepmarket.controller.options import Options

# Container waiting reasons that will not fix themselves: they make the module Degraded.
_STUCK_WAITING = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass(frozen=True)
class Trouble:
    reason: str
    message: str


def _cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
    }


def pod_trouble(pods: Iterable[Mapping[str, Any]]) -> Trouble | None:
    """The first thing that keeps a pod from serving and will not heal by waiting."""
    for pod in sorted(pods, key=lambda p: p.get("metadata", {}).get("name", "")):
        meta, status = pod.get("metadata", {}), pod.get("status", {})
        if meta.get("deletionTimestamp"):
            continue
        name = meta.get("name", "?")
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                return Trouble("Unschedulable", f"pod {name}: {cond.get('message', '').strip()}")
        statuses = (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        )
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in _STUCK_WAITING:
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if reason == "CrashLoopBackOff" and last.get("reason") == "OOMKilled":
                    reason = "OOMKilled"
                detail = waiting.get("message") or last.get("message") or reason
                return Trouble(reason, f"pod {name}, container {cs.get('name')}: {detail}")
    return None


def deployment_trouble(deployment: Mapping[str, Any] | None) -> Trouble | None:
    for cond in (deployment or {}).get("status", {}).get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return Trouble(cond.get("reason") or "ReplicaFailure", cond.get("message", ""))
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Trouble("ProgressDeadlineExceeded", cond.get("message", ""))
    return None


def _rollout(deployment: Mapping[str, Any] | None, wanted_default: int) -> tuple[int, int, bool]:
    """(wanted, ready, complete) for a Deployment, or for one not yet observed."""
    if not deployment:
        return wanted_default, 0, False
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    wanted = int(spec.get("replicas", wanted_default))
    ready = int(status.get("readyReplicas") or 0)
    complete = (
        int(status.get("observedGeneration") or 0)
        >= int(deployment.get("metadata", {}).get("generation") or 0)
        and int(status.get("updatedReplicas") or 0) == wanted
        and int(status.get("replicas") or 0) == wanted
        and int(status.get("availableReplicas") or 0) >= wanted
    )
    return wanted, ready, complete


def _standard_conditions(
    rt: Runtime, plan: Plan, deployment: Mapping[str, Any] | None, pods: list[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int, int]:
    wanted, ready, complete = _rollout(deployment, max(rt.scaling.min, 1 if plan else 0))
    floor = max(1, rt.scaling.min)
    if rt.scaling.autoscaled and wanted < floor:
        # The HPA has not raised the count to minReplicas yet: not ready, whatever runs now.
        wanted, complete = floor, False
    trouble = deployment_trouble(deployment) or pod_trouble(pods)
    counts = f"{ready}/{wanted} replicas ready"
    conditions = []
    if trouble:
        conditions.append(_cond("Ready", False, trouble.reason, trouble.message))
    elif wanted == 0:
        conditions.append(_cond("Ready", False, "ScaledToZero", "spec.replicas is 0"))
    elif ready >= wanted:
        conditions.append(_cond("Ready", True, "Available", counts))
    else:
        conditions.append(_cond("Ready", False, "Deploying", counts))
    if complete:
        conditions.append(_cond("Progressing", False, "RolloutComplete", counts))
    elif trouble and trouble.reason == "ProgressDeadlineExceeded":
        conditions.append(_cond("Progressing", False, trouble.reason, trouble.message))
    else:
        conditions.append(_cond("Progressing", True, "RollingOut", counts))
    if trouble:
        conditions.append(_cond("Degraded", True, trouble.reason, trouble.message))
    else:
        conditions.append(_cond("Degraded", False, "AsExpected", "no problems seen"))
    return conditions, wanted, ready


def _serverless_conditions(
    ksvc: Mapping[str, Any] | None, pods: list[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    ready_pods = sum(
        1
        for p in pods
        for c in p.get("status", {}).get("conditions") or []
        if c.get("type") == "Ready" and c.get("status") == "True"
    )
    kready = next(
        (
            c
            for c in (ksvc or {}).get("status", {}).get("conditions") or []
            if c.get("type") == "Ready"
        ),
        None,
    )
    trouble = pod_trouble(pods)
    conditions = []
    if trouble:
        conditions.append(_cond("Ready", False, trouble.reason, trouble.message))
    elif kready and kready.get("status") == "True":
        conditions.append(_cond("Ready", True, "Available", "Knative Service is ready"))
    else:
        reason = (kready or {}).get("reason") or "Deploying"
        message = (kready or {}).get("message") or "waiting for the Knative Service"
        conditions.append(_cond("Ready", False, reason, message))
    done = bool(kready) and kready.get("status") in {"True", "False"}
    conditions.append(
        _cond("Progressing", not done, "RollingOut" if not done else "RolloutComplete", "")
    )
    conditions.append(
        _cond("Degraded", bool(trouble), trouble.reason if trouble else "AsExpected",
              trouble.message if trouble else "no problems seen")
    )  # fmt: skip
    return conditions, ready_pods


def stamp(
    conditions: list[dict[str, Any]],
    previous: Iterable[Mapping[str, Any]],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Add observedGeneration and lastTransitionTime, keeping the old time when status is same."""
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in conditions:
        old = before.get(cond["type"])
        when = (
            old["lastTransitionTime"]
            if old and old.get("status") == cond["status"] and old.get("lastTransitionTime")
            else now
        )
        out.append({**cond, "observedGeneration": generation, "lastTransitionTime": when})
    return out


def derive_status(
    dm: Mapping[str, Any],
    *,
    options: Options,
    now: str,
    runtime: Runtime | None = None,
    plan: Plan | None = None,
    problem: SpecProblem | None = None,
    deployment: Mapping[str, Any] | None = None,
    ksvc: Mapping[str, Any] | None = None,
    pods: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The whole `.status` a DeepModule should have now."""
    meta = dm["metadata"]
    generation = int(meta.get("generation") or 0)
    previous = (dm.get("status") or {}).get("conditions") or []
    pods = list(pods)
    status: dict[str, Any] = {"observedGeneration": generation}
    if problem or runtime is None or plan is None:
        reason = problem.reason if problem else "InvalidSpec"
        message = problem.message if problem else "the spec could not be resolved"
        conditions = [
            _cond("Ready", False, reason, message),
            _cond("Progressing", False, reason, "nothing to roll out until the spec is fixed"),
            _cond("Degraded", True, reason, message),
        ]
        status["conditions"] = stamp(conditions, previous, generation, now)
        return status
    if plan.serverless:
        conditions, ready = _serverless_conditions(ksvc, pods)
        status["replicas"] = ready
        status["readyReplicas"] = ready
        status["mode"] = "Serverless"
        url = (ksvc or {}).get("status", {}).get("url")
        status["url"] = f"{url}/" if url else internal_url(meta["name"], meta["namespace"], options)
    else:
        conditions, wanted, ready = _standard_conditions(runtime, plan, deployment, pods)
        status["replicas"] = wanted
        status["readyReplicas"] = ready
        status["mode"] = "Standard"
        status["url"] = internal_url(meta["name"], meta["namespace"], options)
    if runtime.scaling.scale_to_zero:
        if plan.scale_to_zero_unavailable:
            conditions.append(
                _cond(
                    "ScaleToZero",
                    False,
                    "KnativeNotInstalled",
                    "minReplicas 0 needs Knative Serving (serving.knative.dev/v1), which this "
                    "cluster lacks; running 1 replica instead",
                )
            )
        else:
            conditions.append(_cond("ScaleToZero", True, "Knative", "served by Knative Serving"))
    ext = external_url(meta["name"], meta["namespace"], options)
    if ext:
        status["externalURL"] = ext
    status["image"] = runtime.image
    status["gpus"] = runtime.resources.gpu
    status["conditions"] = stamp(conditions, previous, generation, now)
    return status


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change `.status` (fields we never set are ignored)."""
    current = current or {}
    return any(current.get(k) != v for k, v in desired.items()) or any(
        k not in desired for k in current if k in _OWNED
    )


_OWNED = {
    "observedGeneration", "replicas", "readyReplicas", "image", "gpus", "mode", "url",
    "externalURL", "conditions",
}  # fmt: skip
