"""DeepModule spec + catalog → what to run (pure).

Fields set on the DeepModule win over the catalog module's runtime and resources.inference; a
spec that the schema could not reject but cannot be served raises `SpecProblem`, which the
operator reports as Ready=False with the problem's reason instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepmarket.catalog.model import Catalog
from deepmarket.controller.podspec import catalog_resources

DEFAULT_PORT = 5000
DEFAULT_TARGET_CPU = 80


class SpecProblem(Exception):
    """The DeepModule cannot be served as written; `reason` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Resources:
    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0
    gpu_product: str | None = None
    gpu_memory_mb: int | None = None


@dataclass(frozen=True)
class Scaling:
    """Replica policy: a fixed count (min == max) or a range for an autoscaler."""

    min: int
    max: int
    target_cpu: int = DEFAULT_TARGET_CPU

    @property
    def autoscaled(self) -> bool:
        return self.max > self.min

    @property
    def scale_to_zero(self) -> bool:
        return self.min == 0 and self.max > 0


@dataclass(frozen=True)
class Weights:
    url: str
    secret: str | None
    mount_path: str


@dataclass(frozen=True)
class Runtime:
    """Everything the builders need, resolved and defaulted."""

    image: str
    model: str | None
    port: int
    resources: Resources
    scaling: Scaling
    module: str | None = None
    weights: Weights | None = None
    env: tuple[dict[str, Any], ...] = ()
    env_from: tuple[dict[str, Any], ...] = ()
    pod_template: dict[str, Any] = field(default_factory=dict)


def _scaling(spec: Mapping[str, Any]) -> Scaling:
    auto = spec.get("autoscaling")
    if auto:
        lo = int(auto.get("minReplicas", 1))
        hi = int(auto["maxReplicas"])
        if hi < lo:  # the CRD's CEL rule rejects this; kept for objects applied without it
            raise SpecProblem("InvalidSpec", "spec.autoscaling.maxReplicas must be >= minReplicas")
        return Scaling(lo, hi, int(auto.get("targetCPUUtilization", DEFAULT_TARGET_CPU)))
    n = int(spec.get("replicas", 1))
    return Scaling(n, n)


def _weights(
    spec: Mapping[str, Any], training_runs: Mapping[str, Mapping[str, Any]]
) -> Weights | None:
    w = spec.get("weights")
    if not w:
        return None
    mount = str(w.get("mountPath", "/srv/weights"))
    if w.get("url"):
        return Weights(str(w["url"]), w.get("secretRef"), mount)
    run_name = str(w.get("trainingRun", ""))
    run = training_runs.get(run_name)
    if run is None:
        raise SpecProblem(
            "WeightsNotFound",
            f"spec.weights.trainingRun: TrainingRun {run_name!r} does not exist in this namespace",
        )
    output = run.get("spec", {}).get("data", {}).get("output", {})
    status = run.get("status") or {}
    # The model is in <output>/<run name>/ once the run Succeeded (status.output.url says so).
    url = (status.get("output") or {}).get("url")
    if status.get("phase") != "Succeeded" or not url:
        raise SpecProblem(
            "WeightsNotReady",
            f"spec.weights.trainingRun: TrainingRun {run_name!r} is "
            f"{status.get('phase') or 'Pending'}, not Succeeded; serve it once it succeeds",
        )
    secret = (
        w.get("secretRef")
        or output.get("secretRef")
        or (run.get("spec", {}).get("data", {}).get("input", {}).get("secretRef"))
    )
    return Weights(str(url).rstrip("/"), secret, mount)


def resolve(
    spec: Mapping[str, Any],
    catalog: Catalog | None,
    *,
    training_runs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Runtime:
    """Merge a DeepModule spec over its catalog module; raise `SpecProblem` when unservable."""
    module_id = spec.get("module")
    module = None
    if module_id:
        if catalog is None:
            if not spec.get("image"):
                raise SpecProblem(
                    "CatalogUnavailable",
                    f"spec.module {module_id!r} needs the catalog, but the operator has none "
                    "loaded (create a CatalogSource in this namespace, or start it with "
                    "--catalog PATH) — or set spec.image",
                )
        else:
            try:
                module = catalog.get(str(module_id))
            except KeyError:
                if not spec.get("image"):
                    raise SpecProblem(
                        "ModuleNotFound",
                        f"spec.module {module_id!r} is not in the catalog; "
                        "fix the id or set spec.image",
                    ) from None
    image = spec.get("image") or (module.image if module else "")
    if not image:
        raise SpecProblem("InvalidSpec", f"catalog module {module_id!r} has no runtime.image")
    merged = catalog_resources(module.resources("inference")) if module else {}
    merged.update(spec.get("resources") or {})
    resources = Resources(
        cpu=None if merged.get("cpu") is None else str(merged["cpu"]),
        memory=None if merged.get("memory") is None else str(merged["memory"]),
        gpu=int(merged.get("gpu") or 0),
        gpu_product=merged.get("gpuProduct"),
        gpu_memory_mb=merged.get("gpuMemoryMB"),
    )
    model = spec.get("model") or (module.model_name if module else None)
    port = int(spec.get("port") or (module.port if module else DEFAULT_PORT))
    return Runtime(
        image=str(image),
        model=str(model) if model else None,
        port=port,
        resources=resources,
        scaling=_scaling(spec),
        module=str(module_id) if module_id else None,
        weights=_weights(spec, training_runs or {}),
        env=tuple(spec.get("env") or ()),
        env_from=tuple(spec.get("envFrom") or ()),
        pod_template=dict(spec.get("podTemplate") or {}),
    )
