"""Pod-spec pieces every resource's builders share (plain data, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def restricted_container_security() -> dict[str, Any]:
    """A container securityContext that passes PodSecurity "restricted": no privilege
    escalation, no capabilities, non-root, the runtime's default seccomp profile."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def catalog_resources(res: Mapping[str, Any]) -> dict[str, Any]:
    """A catalog module's AI4OS-style numbers (cpu, memory_MB, gpu, gpu_memory_MB) → the
    field names DeepModule and TrainingRun specs use."""
    out: dict[str, Any] = {}
    if res.get("cpu") is not None:
        out["cpu"] = res["cpu"]
    if res.get("memory_MB") is not None:
        out["memory"] = f"{int(res['memory_MB'])}Mi"
    if res.get("gpu") is not None:
        out["gpu"] = int(res["gpu"])
    if res.get("gpu_memory_MB"):
        out["gpuMemoryMB"] = int(res["gpu_memory_MB"])
    return out
