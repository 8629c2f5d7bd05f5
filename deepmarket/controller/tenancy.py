"""Teams sharing one cluster (pure): Pod Security labels for the namespaces deepmarket creates,
the per-team ResourceQuota `deepmarket admin quota` writes, and the status message a module gets
when that quota is used up.

Kubernetes enforces all of it natively (PodSecurity and ResourceQuota admission); this module
only builds the objects and turns the apiserver's terse refusal into a sentence a team can act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deepmarket.controller import COMPONENT, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL

GPU = "nvidia.com/gpu"
GPU_QUOTA = f"requests.{GPU}"
QUOTA_NAME = "deepmarket-quota"
DEEPMODULE_COUNT = "count/deepmodules.deepmarket.dev"
TRAININGRUN_COUNT = "count/trainingruns.deepmarket.dev"
MAX_NAMED_CONSUMERS = 5

# Every namespace deepmarket creates (the demo's, the tests') enforces the restricted Pod
# Security Standard; the operator's generated pods meet it.
RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# What the ResourceQuota admission plugin says (k8s.io/apiserver, quota evaluator):
#   exceeded quota: NAME, requested: R=1, used: R=2, limited: R=2
_EXCEEDED = re.compile(
    r"exceeded quota: (?P<name>[^,]+), requested: (?P<requested>.+?), "
    r"used: (?P<used>.+?), limited: (?P<limited>[^\s]+)"
)


def build_quota(
    namespace: str,
    *,
    gpus: int,
    deepmodules: int | None = None,
    trainingruns: int | None = None,
) -> dict[str, Any]:
    """The team's ResourceQuota: GPUs requested by all its pods, and optionally how many
    DeepModules and TrainingRuns it may have. Raises ValueError on a bad value."""
    if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        raise ValueError(f"{namespace!r} is not a namespace name (a DNS label: a-z, 0-9, '-')")
    hard = {GPU_QUOTA: str(gpus)}
    for key, value, flag in (
        (None, gpus, "--gpus"),
        (DEEPMODULE_COUNT, deepmodules, "--deepmodules"),
        (TRAININGRUN_COUNT, trainingruns, "--trainingruns"),
    ):
        if value is None:
            continue
        if value < 0:
            raise ValueError(f"{flag} must be 0 or more, not {value}")
        if key:
            hard[key] = str(value)
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": QUOTA_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "deepmarket"},
        },
        "spec": {"hard": hard},
    }


def describe_quota(quota: Mapping[str, Any]) -> list[str]:
    """One line per limit: `requests.nvidia.com/gpu: 1 used of 2` (usage once computed)."""
    status = quota.get("status") or {}
    used = status.get("used") or {}
    lines = []
    for key, limit in sorted((quota.get("spec") or {}).get("hard", {}).items()):
        now = used.get(key)
        detail = f"{now} used of {limit}" if now is not None else f"limit {limit}"
        lines.append(f"{key}: {detail}")
    return lines


@dataclass(frozen=True)
class QuotaExceeded:
    quota: str
    requested: dict[str, str]
    used: dict[str, str]
    limited: dict[str, str]


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            out[key] = value
    return out


def parse_quota_exceeded(message: str) -> QuotaExceeded | None:
    """The parts of a ResourceQuota refusal, or None when `message` is something else."""
    match = _EXCEEDED.search(message or "")
    if not match:
        return None
    return QuotaExceeded(
        match["name"].strip(),
        _pairs(match["requested"]),
        _pairs(match["used"]),
        _pairs(match["limited"]),
    )


def _gpus_of(pod: Mapping[str, Any]) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        value = (res.get("requests") or {}).get(GPU) or (res.get("limits") or {}).get(GPU) or 0
        try:
            total += int(value)
        except (TypeError, ValueError):
            continue
    return total


def _consumer(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    instance = labels.get(INSTANCE_LABEL)
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and instance:
        kind = "DeepModule" if labels.get("app.kubernetes.io/component") == COMPONENT else None
        return f"{kind or 'TrainingRun'} {instance}"
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller"):
            return f"{owner.get('kind')} {owner.get('name')}"
    return f"Pod {meta.get('name', '?')}"


def gpu_consumers(pods: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Who holds GPUs in a namespace: `DeepModule a` → GPUs of its live pods (what the quota
    counts: pods not yet Succeeded or Failed)."""
    out: dict[str, int] = {}
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        gpus = _gpus_of(pod)
        if gpus:
            who = _consumer(pod)
            out[who] = out.get(who, 0) + gpus
    return out


def gpu_quota_head(used: str | int, limit: str | int) -> str:
    """`quota exhausted: 2 of 2 GPUs in use`, or `quota too small: …` when GPUs are left but
    fewer than asked for (the same words for DeepModules and TrainingRuns)."""
    try:
        full = int(float(used)) >= int(float(limit))
    except (TypeError, ValueError):
        full = True
    word = "exhausted" if full else "too small"
    return f"quota {word}: {used} of {limit} GPUs in use"


def quota_message(
    exceeded: QuotaExceeded, namespace: str, consumers: Mapping[str, int] | None = None
) -> str:
    """`quota exhausted: 2 of 2 GPUs in use by DeepModule a (1), DeepModule b (1); …` — a
    stable sentence (no pod names, which change on every retry) that says how to get unstuck."""
    where = f"ResourceQuota {exceeded.quota} in namespace {namespace}"
    if GPU_QUOTA in exceeded.limited:
        used, limit = exceeded.used.get(GPU_QUOTA, "?"), exceeded.limited[GPU_QUOTA]
        asked = exceeded.requested.get(GPU_QUOTA, "?")
        head = gpu_quota_head(used, limit)
        if consumers:
            ranked = sorted(consumers.items(), key=lambda kv: (-kv[1], kv[0]))
            named = [f"{who} ({n})" for who, n in ranked[:MAX_NAMED_CONSUMERS]]
            if len(ranked) > MAX_NAMED_CONSUMERS:
                named.append(f"{len(ranked) - MAX_NAMED_CONSUMERS} more")
            head += " by " + ", ".join(named)
        return (
            f"{head}; a replica needs {asked} more ({where}): free GPUs there, or ask an "
            f"admin to raise it (deepmarket admin quota {namespace} --gpus N)"
        )
    parts = [
        f"{key} {exceeded.used.get(key, '?')} of {limit} in use"
        for key, limit in sorted(exceeded.limited.items())
    ]
    return f"quota exhausted: {', '.join(parts)} ({where}): free some, or ask an admin to raise it"
