"""The manifests a user copies from the marketplace to deploy or train a module.

Pure functions over a catalog `Module`. The operator's CRDs (controller/crds) are the
authority on these shapes; a cluster test dry-runs these manifests against them.
"""

from __future__ import annotations

from typing import Any

from deepmarket import API_GROUP, API_VERSION
from deepmarket.catalog.model import Module

API = f"{API_GROUP}/{API_VERSION}"


def _k8s_resources(res: dict[str, Any]) -> dict[str, Any]:
    """AI4OS-style resource numbers (cpu, memory_MB, gpu, ...) → DeepModule/TrainingRun fields."""
    out: dict[str, Any] = {}
    if "cpu" in res:
        out["cpu"] = str(res["cpu"])
    if "memory_MB" in res:
        out["memory"] = f"{int(res['memory_MB'])}Mi"
    if res.get("gpu"):
        out["gpu"] = int(res["gpu"])
    if res.get("gpu_memory_MB"):
        out["gpuMemoryMB"] = int(res["gpu_memory_MB"])
    return out


def deepmodule_manifest(module: Module, *, namespace: str | None = None) -> dict[str, Any]:
    """A `DeepModule` that serves the module's DEEPaaS API for inference."""
    metadata: dict[str, Any] = {"name": module.id}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {"module": module.id, "image": module.image, "model": module.model_name}
    resources = _k8s_resources(module.resources("inference"))
    if resources:
        spec["resources"] = resources
    spec["autoscaling"] = {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilization": 80}
    return {"apiVersion": API, "kind": "DeepModule", "metadata": metadata, "spec": spec}


def trainingrun_manifest(module: Module, *, namespace: str | None = None) -> dict[str, Any]:
    """A `TrainingRun` that trains the module on the user's data in WebDAV/Nextcloud."""
    if not module.trainable:
        raise ValueError(f"module {module.id!r} does not support training (runtime.train)")
    metadata: dict[str, Any] = {"name": f"{module.id}-train"}
    if namespace:
        metadata["namespace"] = namespace
    spec: dict[str, Any] = {"module": module.id, "image": module.image, "model": module.model_name}
    resources = _k8s_resources(module.resources("training"))
    if resources:
        spec["resources"] = resources
    spec["args"] = train_defaults(module)
    spec["data"] = {
        "input": {
            "url": "https://nextcloud.example.org/remote.php/dav/files/USER/datasets/" + module.id,
            "secretRef": "webdav-credentials",
        },
        "output": {
            "url": "https://nextcloud.example.org/remote.php/dav/files/USER/models/" + module.id,
            "secretRef": "webdav-credentials",
        },
    }
    return {"apiVersion": API, "kind": "TrainingRun", "metadata": metadata, "spec": spec}


DATA_URL = "https://nextcloud.example.org/remote.php/dav/files/USER/datasets/"
MODELS_URL = "https://nextcloud.example.org/remote.php/dav/files/USER/models"


def train_defaults(module: Module) -> dict[str, Any]:
    """The declared training args that have a default (what the marketplace pre-fills)."""
    return {
        name: arg["default"]
        for name, arg in module.train_args.items()
        if isinstance(arg, dict) and "default" in arg
    }


def train_command(module: Module) -> str:
    """The `deepmarket train` command a scientist copies from the module's page."""
    if not module.trainable:
        raise ValueError(f"module {module.id!r} does not support training (runtime.train)")
    parts = [f"deepmarket train {module.id}", f"--data {DATA_URL}{module.id}",
             f"--output {MODELS_URL}"]  # fmt: skip
    for name, value in train_defaults(module).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f"--arg '{name}={text}'" if "$" in text or " " in text else
                     f"--arg {name}={text}")  # fmt: skip
    gpu = module.resources("training").get("gpu")
    if gpu:
        parts.append(f"--gpus {int(gpu)}")
    parts.append("--follow")
    return " \\\n    ".join(parts)
