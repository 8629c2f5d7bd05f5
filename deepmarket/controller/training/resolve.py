"""TrainingRun spec + catalog → what to run (pure).

Fields set on the TrainingRun win over the catalog module's runtime and resources.training. A
spec the schema could not reject but that cannot run raises `SpecProblem`; the operator reports
it as a condition with that reason instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepmarket.catalog.model import Catalog
from deepmarket.controller.podspec import catalog_resources

DATA_DIR = "/srv/data"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_DIR = "/srv/weights"  # where DeepModule mounts weights too, and the digits image reads
DEFAULT_BACKOFF_LIMIT = 1  # one retry: an upload or a node can fail once; a bug fails twice


class SpecProblem(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Folder:
    url: str
    secret: str | None
    vendor: str


@dataclass(frozen=True)
class Policy:
    backoff_limit: int = DEFAULT_BACKOFF_LIMIT
    active_deadline_s: int | None = None
    ttl_after_finished_s: int | None = None
    suspend: bool = False


@dataclass(frozen=True)
class Training:
    """Everything the Job builder needs, resolved and defaulted."""

    image: str
    model: str | None
    module: str | None
    args: dict[str, Any]
    cpu: str | None
    memory: str | None
    gpu: int
    gpu_product: str | None
    gpu_memory_mb: int | None
    input: Folder
    output: Folder
    model_dir: str = MODEL_DIR
    policy: Policy = Policy()
    env: tuple[dict[str, Any], ...] = ()
    pod_template: dict[str, Any] = field(default_factory=dict)


def vendor_of(url: str, given: str | None) -> str:
    """rclone's webdav vendor: as given, else Nextcloud when the URL has its DAV path."""
    if given:
        return given
    return "nextcloud" if "/remote.php/" in url else "other"


def _folder(data: Mapping[str, Any], side: str, fallback_secret: str | None) -> Folder:
    spec = data.get(side) or {}
    url = str(spec.get("url") or "")
    if not url:
        raise SpecProblem("InvalidSpec", f"spec.data.{side}.url is missing")
    secret = spec.get("secretRef") or fallback_secret
    return Folder(url.rstrip("/"), secret, vendor_of(url, spec.get("vendor")))


def _module(spec: Mapping[str, Any], catalog: Catalog | None) -> Any:
    module_id = spec.get("module")
    if not module_id:
        return None
    if catalog is None:
        if spec.get("image"):
            return None
        raise SpecProblem(
            "CatalogUnavailable",
            f"spec.module {module_id!r} needs the catalog, but the operator has none loaded "
            "(start it with --catalog PATH) — or set spec.image",
        )
    try:
        module = catalog.get(str(module_id))
    except KeyError:
        if spec.get("image"):
            return None
        raise SpecProblem(
            "ModuleNotFound", f"spec.module {module_id!r} is not in the catalog; fix the id"
        ) from None
    if not module.trainable:
        raise SpecProblem(
            "NotTrainable",
            f"catalog module {module_id!r} does not support training (runtime.train is false)",
        )
    return module


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def check_args(args: dict[str, Any], declared: Mapping[str, Any], module_id: str) -> None:
    """Refuse args the catalog module does not declare, or of the wrong type."""
    names = ", ".join(sorted(declared))
    for name, value in args.items():
        if name not in declared:
            raise SpecProblem(
                "InvalidArgs",
                f"spec.args.{name}: {module_id} does not take it; its training args are {names}",
            )
        want = (declared[name] or {}).get("type", "string")
        ok = isinstance(value, _TYPES.get(want, (object,)))
        if want in ("integer", "number") and isinstance(value, bool):
            ok = False
        if want == "string" and not isinstance(value, str):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)  # "1" is fine
        if not ok:
            raise SpecProblem(
                "InvalidArgs", f"spec.args.{name}: {module_id} wants a {want}, got {value!r}"
            )


def resolve(spec: Mapping[str, Any], catalog: Catalog | None) -> Training:
    """Merge a TrainingRun spec over its catalog module; raise `SpecProblem` when unrunnable."""
    module = _module(spec, catalog)
    image = spec.get("image") or (module.image if module else "")
    if not image:
        raise SpecProblem("InvalidSpec", "set spec.image or a catalog spec.module")
    merged = catalog_resources(module.resources("training")) if module else {}
    merged.update(spec.get("resources") or {})
    data = spec.get("data") or {}
    input_ = _folder(data, "input", None)
    output = _folder(data, "output", input_.secret)
    args = spec.get("args") or {}
    if not isinstance(args, Mapping):
        raise SpecProblem("InvalidSpec", "spec.args must be a map of argument name to value")
    for name in args:
        if not IDENTIFIER.match(str(name)):
            raise SpecProblem(
                "InvalidArgs",
                f"spec.args: {name!r} is not an identifier (letters, digits, '_'), "
                "as deepaas-cli flags are",
            )
    if module is not None and module.train_args:
        check_args(dict(args), module.train_args, module.id)
    run = spec.get("runPolicy") or {}
    policy = Policy(
        backoff_limit=int(run.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)),
        active_deadline_s=run.get("activeDeadlineSeconds"),
        ttl_after_finished_s=run.get("ttlSecondsAfterFinished"),
        suspend=bool(run.get("suspend", False)),
    )
    model = spec.get("model") or (module.model_name if module else None)
    return Training(
        image=str(image),
        model=str(model) if model else None,
        module=str(spec["module"]) if spec.get("module") else None,
        args=dict(args),
        cpu=None if merged.get("cpu") is None else str(merged["cpu"]),
        memory=None if merged.get("memory") is None else str(merged["memory"]),
        gpu=int(merged.get("gpu") or 0),
        gpu_product=merged.get("gpuProduct"),
        gpu_memory_mb=merged.get("gpuMemoryMB"),
        input=input_,
        output=output,
        model_dir=str(spec.get("modelDir") or MODEL_DIR),
        policy=policy,
        env=tuple(spec.get("env") or ()),
        pod_template=dict(spec.get("podTemplate") or {}),
    )
