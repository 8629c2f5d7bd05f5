"""Observed Job, pods, quota and progress → TrainingRun status (pure).

Terminal is terminal: once `Succeeded` or `Failed` is recorded, nothing observed later (a Job
deleted by TTL or by hand, an operator restart) changes it, and no Job is ever created again.
A run whose Job vanished before its outcome was seen is `Failed` with reason `JobLost` — never
silently re-run (Kubeflow's resurrection bug). Messages carry only what matters, so repeated
watch events derive the same status and cost no write.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from deepmarket.controller.compare import parse_quantity
from deepmarket.controller.tenancy import gpu_quota_head
from deepmarket.controller.training.builders import CONTAINER
from deepmarket.controller.training.resolve import SpecProblem, Training

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Suspended")
TERMINAL = ("Succeeded", "Failed")
CONDITION_TYPES = ("Created", "Running", "Succeeded", "Failed", "Suspended")
_STUCK_WAITING = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName"}
_CONFIG_WAITING = {"CreateContainerConfigError", "CreateContainerError"}
# Spec problems no wait can fix (the spec is immutable); a missing catalog module may appear.
PERMANENT = {"InvalidArgs", "NotTrainable", "InvalidSpec", "JobRejected"}
PROGRESS_KEYS = ("percent", "epoch", "epochs", "etaSeconds", "step", "message", "updatedAt")


def is_terminal(run: Mapping[str, Any]) -> bool:
    return (run.get("status") or {}).get("phase") in TERMINAL


def _cond(type_: str, ok: bool | None, reason: str, message: str = "") -> dict[str, Any]:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    return {"type": type_, "status": status, "reason": reason, "message": message[:1500]}


def termination_outcome(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The step program's JSON outcome from the train container's termination message."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") != CONTAINER:
            continue
        terminated = (cs.get("state") or {}).get("terminated") or {}
        text = terminated.get("message")
        if not text:
            reason = terminated.get("reason")
            if reason and reason not in ("Completed", "Error"):  # OOMKilled, DeadlineExceeded…
                return {"ok": False, "reason": reason, "message": f"container {reason}"}
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return {"ok": False, "reason": "TrainingFailed", "message": text[-1500:]}
        return data if isinstance(data, dict) else None
    return None


def _by_age(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")


POD_NEWS_GRACE_S = 60


def _pod_news_pending(
    failed: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], now: str
) -> bool:
    """True while a pod of the failed Job still looks alive in our cache, for at most
    POD_NEWS_GRACE_S after the Job's Failed condition (a pod stuck in the cache must not hold
    the run open for ever)."""
    if not any(_phase_of(p) not in ("Failed", "Succeeded") for p in pods):
        return False
    since = failed.get("lastTransitionTime")
    if not since:
        return True
    try:
        age = datetime.fromisoformat(now.replace("Z", "+00:00")) - datetime.fromisoformat(
            since.replace("Z", "+00:00")
        )
    except ValueError:
        return False
    return age.total_seconds() < POD_NEWS_GRACE_S


def _phase_of(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def unschedulable_message(scheduler: str, training: Training | None) -> str:
    """Name the resource that is missing, then quote the scheduler."""
    said = scheduler.strip()
    if training and training.gpu and "Insufficient nvidia.com/gpu" in said:
        head = f"no node has {training.gpu} free GPU(s) (nvidia.com/gpu) now"
    elif training and training.gpu_product and "affinity" in said:
        head = f"no node offers GPU product {training.gpu_product!r} (nvidia.com/gpu.product)"
        if training.gpu_memory_mb:
            head += f" with ≥ {training.gpu_memory_mb} MiB (nvidia.com/gpu.memory)"
    elif training and training.gpu_memory_mb and "affinity" in said:
        head = f"no node has a GPU with ≥ {training.gpu_memory_mb} MiB (nvidia.com/gpu.memory)"
    elif m := re.search(r"Insufficient ([\w./-]+)", said):
        head = f"no node has enough free {m.group(1)}"
    else:
        head = "no node can run the training pod"
    return f"{head}; the scheduler says: {said}"


def _asks(training: Training) -> dict[str, tuple[str, Decimal]]:
    """What the training pod counts against each quota key: (as written, as a number)."""
    asks: dict[str, tuple[str, Decimal]] = {
        "pods": ("1", Decimal(1)),
        "count/pods": ("1", Decimal(1)),
    }
    for keys, value in (
        (("cpu", "requests.cpu"), training.cpu),
        (("memory", "requests.memory", "limits.memory"), training.memory),
    ):
        number = parse_quantity(value) if value else None
        if value and number is not None:
            asks.update({key: (str(value), number) for key in keys})
    return asks


def quota_block(
    quotas: Iterable[Mapping[str, Any]], training: Training | None, namespace: str = "NAMESPACE"
) -> str | None:
    """Why a namespace ResourceQuota keeps this run's pod from being created (which quota,
    which resource, asked, used and allowed), or None."""
    if not training:
        return None
    for quota in quotas:
        status = quota.get("status") or {}
        hard, used = status.get("hard") or {}, status.get("used") or {}
        name = (quota.get("metadata") or {}).get("name", "?")
        for key in ("requests.nvidia.com/gpu", "limits.nvidia.com/gpu"):
            if not training.gpu or key not in hard:
                continue
            limit, taken = int(float(hard[key])), int(float(used.get(key, 0)))
            if taken + training.gpu > limit:
                return (
                    f"{gpu_quota_head(taken, limit)} (ResourceQuota {name!r}, {key}); this run "
                    f"asks for {training.gpu}. It starts when GPUs are freed, or ask an admin to "
                    f"raise the quota (deepmarket admin quota {namespace} --gpus N)"
                )
        for key, (written, ask) in _asks(training).items():
            limit, taken = parse_quantity(hard.get(key)), parse_quantity(used.get(key, "0"))
            if limit is None or taken is None or taken + ask <= limit:
                continue
            return (
                f"exceeds ResourceQuota {name!r}: {key} {written} requested, "
                f"{used.get(key, '0')} used of {hard[key]}. It starts when other pods in "
                f"{namespace} free it, or ask an admin to raise the quota "
                f"(kubectl edit resourcequota {name} -n {namespace})"
            )
    return None


def _pod_trouble(
    pods: list[Mapping[str, Any]], training: Training | None
) -> tuple[str, str] | None:
    for pod in reversed(_by_age(pods)):
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp") or _phase_of(pod) in ("Succeeded", "Failed"):
            continue
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return "Unschedulable", unschedulable_message(cond.get("message", ""), training)
        statuses = (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        )
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in _STUCK_WAITING:
                return "ImagePullBackOff", (
                    f"container {cs.get('name')} cannot pull image {cs.get('image')!r}: "
                    f"{waiting.get('message') or reason}"
                )
            if reason in _CONFIG_WAITING:
                return reason, f"container {cs.get('name')}: {waiting.get('message') or reason}"
    return None


def _job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def attempts_of(job: Mapping[str, Any] | None) -> int:
    if not job:
        return 0
    st = job.get("status") or {}
    return (
        int(st.get("failed") or 0)
        + int(st.get("succeeded") or 0)
        + min(1, int(st.get("active") or 0))
    )


def summary(progress: Mapping[str, Any] | None, phase: str) -> str:
    """The Progress printer column: `45% epoch 3/10 ETA 2m`, or the step in progress."""
    if phase == "Succeeded":
        return "100%"
    if not progress:
        return ""
    parts = []
    if isinstance(progress.get("percent"), (int, float)):
        parts.append(f"{progress['percent']:.0f}%")
    if progress.get("epoch") is not None:
        total = f"/{progress['epochs']}" if progress.get("epochs") else ""
        parts.append(f"epoch {progress['epoch']}{total}")
    eta = progress.get("etaSeconds")
    if isinstance(eta, (int, float)) and phase == "Running":
        parts.append(
            f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s" if eta >= 60 else f"ETA {int(eta)}s"
        )
    if not parts and progress.get("step"):
        parts.append(str(progress["step"]))
    return " ".join(parts)


def _merge_conditions(
    old: list[Mapping[str, Any]], new: list[dict[str, Any]], generation: int, now: str
) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in old}
    out = []
    for cond in new:
        prev = before.get(cond["type"])
        same = prev is not None and prev.get("status") == cond["status"]
        cond["lastTransitionTime"] = (prev or {}).get("lastTransitionTime") if same else now
        cond["lastTransitionTime"] = cond["lastTransitionTime"] or now
        cond["observedGeneration"] = generation
        out.append(cond)
    return out


def derive_status(
    run: Mapping[str, Any],
    *,
    training: Training | None,
    problem: SpecProblem | None,
    job: Mapping[str, Any] | None,
    pods: Iterable[Mapping[str, Any]],
    quota: str | None,
    progress: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """The status the TrainingRun should have. Terminal statuses come back unchanged."""
    old = dict(run.get("status") or {})
    if old.get("phase") in TERMINAL:
        return old
    meta = run.get("metadata") or {}
    name = meta.get("name", "")
    generation = int(meta.get("generation") or 1)
    pods = list(pods)
    st: dict[str, Any] = {"observedGeneration": generation}
    for key in ("jobName", "jobUID", "startTime", "progress", "metrics"):
        if key in old:
            st[key] = old[key]
    if progress:
        st["progress"] = {k: progress[k] for k in PROGRESS_KEYS if k in progress}
        if progress.get("metrics"):
            st["metrics"] = dict(progress["metrics"])
    if training and training.gpu:
        st["gpus"] = training.gpu
    conds: list[dict[str, Any]] = []

    def finish(phase: str, extra: list[dict[str, Any]]) -> dict[str, Any]:
        st["phase"] = phase
        st["reason"] = (conds + extra)[-1]["reason"]  # each branch appends its explanation last
        st["progress"] = {**(st.get("progress") or {})}
        st["progress"]["summary"] = summary(st["progress"], phase)
        if not st["progress"]["summary"]:
            del st["progress"]["summary"]
        if not st["progress"]:
            del st["progress"]
        st["conditions"] = _merge_conditions(old.get("conditions") or [], conds + extra,
                                             generation, now)  # fmt: skip
        return st

    if problem is not None and job is None:
        conds.append(_cond("Created", False, problem.reason, problem.message))
        if problem.reason in PERMANENT:  # the spec cannot change: waiting would be forever
            st["completionTime"] = now
            conds.append(_cond("Failed", True, problem.reason, problem.message))
            return finish("Failed", [])
        return finish("Pending", [])
    if job is None:
        if old.get("jobUID"):
            st["completionTime"] = now
            url = training.output.url + f"/{name}/" if training else "the output folder"
            msg = (
                f"the Job (uid {old['jobUID']}) was deleted before its outcome was recorded "
                f"(by hand, or while the operator was down); look for the model in {url}; "
                "create a new TrainingRun to train again"
            )
            conds.append(_cond("Created", True, "JobCreated"))
            conds.append(_cond("Failed", True, "JobLost", msg))
            return finish("Failed", [])
        if quota:
            conds.append(_cond("Created", False, "Unschedulable", quota))
            return finish("Pending", [])
        conds.append(_cond("Created", False, "Creating", "creating the training Job"))
        return finish("Pending", [])

    jmeta, jstatus = job.get("metadata") or {}, job.get("status") or {}
    st["jobName"] = jmeta.get("name", name)
    if jmeta.get("uid"):
        st["jobUID"] = jmeta["uid"]
    if jstatus.get("startTime"):
        st.setdefault("startTime", jstatus["startTime"])
    st["attempts"] = attempts_of(job)
    conds.append(_cond("Created", True, "JobCreated", f"Job {st['jobName']}"))
    by_age = _by_age(pods)

    complete = _job_condition(job, "Complete")
    if complete:
        outcome = None
        for pod in reversed(by_age):
            if _phase_of(pod) == "Succeeded":
                outcome = termination_outcome(pod)
                break
        st["completionTime"] = jstatus.get("completionTime") or now
        output = (outcome or {}).get("output") or {}
        files = output.get("files") or []
        st["output"] = {
            "url": output.get("url") or (training.output.url + f"/{name}/" if training else ""),
            "files": files,
            "totalBytes": sum(int(f.get("size") or 0) for f in files),
        }
        if output.get("truncated"):
            st["output"]["truncated"] = True
        if (outcome or {}).get("metrics"):
            st["metrics"] = outcome["metrics"]
        st["progress"] = {**(st.get("progress") or {}), "percent": 100, "step": "Done"}
        st["progress"].pop("etaSeconds", None)
        msg = f"model uploaded to {st['output']['url']}"
        if files:
            msg += f" ({len(files)} files, {st['output']['totalBytes']} bytes)"
        conds.append(_cond("Running", False, "Completed"))
        conds.append(_cond("Succeeded", True, "Succeeded", msg))
        return finish("Succeeded", [])

    failed = _job_condition(job, "Failed")
    if failed:
        st["completionTime"] = now
        outcome = None
        for pod in reversed(by_age):
            if _phase_of(pod) == "Failed":
                outcome = termination_outcome(pod)
                if outcome:
                    break
        job_reason = failed.get("reason") or "Failed"
        if (
            not outcome
            and job_reason != "DeadlineExceeded"
            and _pod_news_pending(failed, by_age, now)
        ):
            # The Job controller saw the pod fail before our pod cache did: its termination
            # message (the cause the user must fix) is on the way. A run that finished now
            # would keep the generic reason for good, so wait for the pod's update.
            conds.append(_cond("Running", True, "Finishing",
                               "the Job failed; reading the cause from its pod"))  # fmt: skip
            return finish("Running", [])
        if job_reason == "DeadlineExceeded":
            deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
            reason = "DeadlineExceeded"
            msg = (
                f"the run took longer than runPolicy.activeDeadlineSeconds ({deadline}s) "
                "and was stopped"
            )
        elif outcome and outcome.get("reason"):
            reason, msg = outcome["reason"], str(outcome.get("message") or "")
            if job_reason == "BackoffLimitExceeded":
                msg += f" (failed {st['attempts']} attempt(s): backoffLimit reached)"
        elif job_reason == "BackoffLimitExceeded":
            reason = "BackoffLimitExceeded"
            msg = f"failed {st['attempts']} attempt(s): {failed.get('message') or ''}".strip()
        else:
            reason, msg = job_reason, failed.get("message") or "the Job failed"
        conds.append(_cond("Running", False, "Failed"))
        conds.append(_cond("Failed", True, reason, msg))
        return finish("Failed", [])

    if (job.get("spec") or {}).get("suspend"):
        conds.append(_cond("Running", False, "Suspended"))
        conds.append(
            _cond("Suspended", True, "Suspended", "runPolicy.suspend is true; pods stopped")
        )
        return finish("Suspended", [])

    trouble = _pod_trouble(pods, training)
    running = [
        p
        for p in pods
        if _phase_of(p) == "Running" and not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    if trouble:
        conds.append(_cond("Running", False, *trouble))
        return finish("Pending", [])
    if running:
        step = (st.get("progress") or {}).get("step") or "PodRunning"
        msg = f"pod {(running[-1].get('metadata') or {}).get('name')}"
        if st["attempts"] > 1:
            msg += f", attempt {st['attempts']}"
        conds.append(_cond("Running", True, step, msg))
        return finish("Running", [])
    if old.get("phase") == "Running" and any(_phase_of(p) == "Succeeded" for p in pods):
        return old  # the pod ended well, the Job has not said Complete yet: no news
    if not pods and quota:
        conds.append(_cond("Running", False, "Unschedulable", quota))
        return finish("Pending", [])
    conds.append(_cond("Running", False, "Starting", "waiting for the training pod to start"))
    return finish("Pending", [])


# Worth a write on their own; the rest (attempts, startTime, gpus, …) rides along with them,
# so a run costs about three status writes: Created, Running, Succeeded/Failed.
SIGNIFICANT = ("phase", "reason", "jobUID", "observedGeneration", "progress", "metrics",
               "output", "completionTime")  # fmt: skip


def _gist(status: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: status.get(k) for k in SIGNIFICANT}
    out["conditions"] = sorted(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in status.get("conditions") or []
    )
    return out


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether `new` differs from `old` in anything worth an API write."""
    return _gist(old or {}) != _gist(new)
