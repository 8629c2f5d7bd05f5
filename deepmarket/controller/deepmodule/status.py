"""Observed children → DeepModule status (pure).

Conditions follow metav1.Condition. `Ready` is True only when the generation we asked for is
rolled out (the Deployment observed it and no pod of an older template is left) and at least
the minimum replica count is available, and nothing is wrong — a crash-looping new revision
makes it False even if old replicas still answer (KServe keeps Ready=True there; that hides
broken rollouts). A scale-up above the minimum never turns it False. Crash loops are judged from
restartCount/lastState, and messages carry no counters, so a repeating problem costs no write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deepmarket.controller.deepmodule.builders import Plan, external_url, internal_url
from deepmarket.controller.deepmodule.resolve import Runtime, SpecProblem
from deepmarket.controller.options import Options
from deepmarket.controller.tenancy import parse_quota_exceeded, quota_message

# Container waiting reasons that will not fix themselves: they make the module Degraded.
_STUCK_WAITING = {
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",  # imagePullPolicy Never and the image is not on the node
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


def _crash_looping(cs: Mapping[str, Any]) -> Trouble | None:
    """A container that keeps exiting, judged from restartCount/lastState rather than the
    current state (which cycles waiting → running → terminated and would make status flap)."""
    state = cs.get("state") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    now_dead = state.get("terminated") or {}
    waiting = (state.get("waiting") or {}).get("reason")
    exited = now_dead if now_dead.get("exitCode") not in (None, 0) else last
    restarts = int(cs.get("restartCount") or 0)
    if waiting != "CrashLoopBackOff" and (cs.get("ready") or restarts == 0):
        return None
    if waiting != "CrashLoopBackOff" and exited.get("exitCode") in (None, 0):
        return None
    reason = "OOMKilled" if exited.get("reason") == "OOMKilled" else "CrashLoopBackOff"
    code = exited.get("exitCode")
    why = f"exit code {code}" + (f", {exited['reason']}" if exited.get("reason") else "")
    return Trouble(reason, f"container {cs.get('name')} keeps exiting ({why}); see `kubectl "
                   "logs --previous`")  # fmt: skip


def pod_troubles(pods: Iterable[Mapping[str, Any]]) -> list[Trouble]:
    """What keeps pods from serving and will not heal by waiting, one per pod, by pod name.
    Messages carry no counters or timestamps, so a repeating problem reads the same."""
    out = []
    for pod in sorted(pods, key=lambda p: p.get("metadata", {}).get("name", "")):
        meta, status = pod.get("metadata", {}), pod.get("status", {})
        if meta.get("deletionTimestamp"):
            continue
        name = meta.get("name", "?")
        found: Trouble | None = None
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                found = Trouble("Unschedulable", f"pod {name}: {cond.get('message', '').strip()}")
        statuses = (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        )
        for cs in statuses:
            if found:
                break
            loop = _crash_looping(cs)
            if loop:
                found = Trouble(loop.reason, f"pod {name}, {loop.message}")
                break
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in {"ImagePullBackOff", "ErrImagePull"}:
                # The two alternate while the kubelet retries: one reason, one message.
                found = Trouble(
                    "ImagePullBackOff",
                    f"pod {name}, container {cs.get('name')}: cannot pull image "
                    f"{cs.get('image') or ''}".rstrip(),
                )
            elif reason in _STUCK_WAITING:
                found = Trouble(reason, f"pod {name}, container {cs.get('name')}: "
                                f"{waiting.get('message') or reason}")  # fmt: skip
        if found:
            out.append(found)
    return out


def pod_trouble(pods: Iterable[Mapping[str, Any]]) -> Trouble | None:
    """The first thing that keeps a pod from serving and will not heal by waiting."""
    troubles = pod_troubles(pods)
    return troubles[0] if troubles else None


def deployment_trouble(deployment: Mapping[str, Any] | None) -> Trouble | None:
    for cond in (deployment or {}).get("status", {}).get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return Trouble(cond.get("reason") or "ReplicaFailure", cond.get("message", ""))
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Trouble("ProgressDeadlineExceeded", cond.get("message", ""))
    return None


def explain_quota(
    trouble: Trouble | None, namespace: str, gpu_users: Mapping[str, int] | None
) -> Trouble | None:
    """A ReplicaSet that may not create pods because the team's ResourceQuota is used up says
    `exceeded quota: …, used: …` with a random pod name; say who holds the GPUs instead."""
    exceeded = parse_quota_exceeded(trouble.message) if trouble else None
    if exceeded is None:
        return trouble
    return Trouble("QuotaExhausted", quota_message(exceeded, namespace, gpu_users))


@dataclass(frozen=True)
class Rollout:
    wanted: int  # the Deployment's replica count now (the HPA's choice when autoscaled)
    ready: int
    available: int
    rolled_out: bool  # the wanted generation is the only one running


def rollout(
    deployment: Mapping[str, Any] | None, wanted_default: int, applied: int | None = None
) -> Rollout:
    """What a Deployment's status says about the generation we asked for: `applied`, the
    generation our last write of it produced (a later one from a scale alone changes no pod
    template); unknown (after a restart): the current generation."""
    if not deployment:
        return Rollout(wanted_default, 0, 0, False)
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    wanted = int(spec.get("replicas", wanted_default))
    observed = int(status.get("observedGeneration") or 0)  # 0: not seen by the controller yet
    required = applied if applied is not None else deployment.get("metadata", {}).get("generation")
    generation_seen = observed > 0 and observed >= int(required or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    return Rollout(
        wanted=wanted,
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        # No pod of an older template is left: everything available runs what we asked for.
        rolled_out=generation_seen and total == updated,
    )


def _standard_conditions(
    rt: Runtime,
    plan: Plan,
    deployment: Mapping[str, Any] | None,
    pods: list[Mapping[str, Any]],
    applied: int | None = None,
    quota: tuple[str, Mapping[str, int] | None] = ("", None),
) -> tuple[list[dict[str, Any]], int, int, bool]:
    floor = max(1, rt.scaling.min)
    ro = rollout(deployment, floor, applied)
    wanted = max(ro.wanted, floor) if rt.scaling.autoscaled else ro.wanted
    serving = ro.rolled_out and ro.available >= min(floor, wanted) and wanted > 0
    troubles = pod_troubles(pods)
    if serving:
        # Pods pending while the minimum serves (a scale-up waiting for a new node) are the
        # cluster autoscaler's business, not a fault of the module.
        troubles = [t for t in troubles if t.reason != "Unschedulable"]
    trouble = explain_quota(deployment_trouble(deployment), *quota) or (
        troubles[0] if troubles else None
    )
    counts = f"{ro.available} available, at least {min(floor, wanted)} wanted"
    conditions = []
    if trouble:
        conditions.append(_cond("Ready", False, trouble.reason, trouble.message))
    elif wanted == 0:
        conditions.append(_cond("Ready", False, "ScaledToZero", "spec.replicas is 0"))
    elif serving:
        conditions.append(_cond("Ready", True, "Available", counts))
    else:
        conditions.append(_cond("Ready", False, "Deploying", counts))
    if serving or wanted == 0:
        conditions.append(_cond("Progressing", False, "RolloutComplete", counts))
    elif trouble and trouble.reason == "ProgressDeadlineExceeded":
        conditions.append(_cond("Progressing", False, trouble.reason, trouble.message))
    else:
        conditions.append(_cond("Progressing", True, "RollingOut", counts))
    if trouble:
        conditions.append(_cond("Degraded", True, trouble.reason, trouble.message))
    else:
        conditions.append(_cond("Degraded", False, "AsExpected", "no problems seen"))
    return conditions, wanted, ro.ready, ro.rolled_out


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
    applied_generation: int | None = None,
    gpu_users: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The whole `.status` a DeepModule should have now. `gpu_users` (who holds GPUs in the
    namespace) names them when the team's quota keeps pods from being created."""
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
    rolled_out = False
    if plan.serverless:
        conditions, ready = _serverless_conditions(ksvc, pods)
        status["replicas"] = ready
        status["readyReplicas"] = ready
        status["mode"] = "Serverless"
        url = (ksvc or {}).get("status", {}).get("url")
        status["url"] = f"{url}/" if url else internal_url(meta["name"], meta["namespace"], options)
    else:
        conditions, wanted, ready, rolled_out = _standard_conditions(
            runtime, plan, deployment, pods, applied_generation, (meta["namespace"], gpu_users)
        )
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
    # The image that runs: the new one only once nothing older is left.
    previous_image = (dm.get("status") or {}).get("image")
    if plan.serverless or rolled_out:
        status["image"] = runtime.image
    elif previous_image:
        status["image"] = previous_image
    status["gpus"] = runtime.resources.gpu
    status["conditions"] = stamp(conditions, previous, generation, now)
    return status


FAILING = "ReconcileFailing"


def failing_status(dm: Mapping[str, Any], error: str, now: str) -> dict[str, Any]:
    """The status saying the operator keeps failing on this DeepModule, and why; what else the
    status said stays (a module that serves keeps Ready=True while a change cannot be applied)."""
    current = dict(dm.get("status") or {})
    previous = current.get("conditions") or []
    generation = int(dm["metadata"].get("generation") or 0)
    message = f"the operator keeps failing and retries with backoff: {error}"[:1024]
    kept = {c["type"]: c for c in previous if c.get("type") not in {"Degraded"}}
    conditions = [
        {k: v for k, v in c.items() if k not in {"observedGeneration", "lastTransitionTime"}}
        for c in kept.values()
    ]
    if "Ready" not in kept:
        conditions.insert(0, _cond("Ready", False, FAILING, message))
    conditions.append(_cond("Degraded", True, FAILING, message))
    current["conditions"] = stamp(conditions, previous, generation, now)
    olds = [kept.get(c["type"]) for c in conditions]
    for cond, old in zip(current["conditions"], olds, strict=True):
        if old and old.get("observedGeneration") is not None and cond["type"] != "Degraded":
            cond["observedGeneration"] = old["observedGeneration"]
    return current


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
