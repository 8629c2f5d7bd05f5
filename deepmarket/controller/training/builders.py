"""TrainingRun → the Job that trains it (pure).

The pod: an init container (`tools`, the operator's image) copies `step.py` and an `rclone`
binary into a shared volume; the `train` container runs the *module's* image with
`python3 /deepmarket/step.py`, which pulls the data, runs `deepaas-cli train` and uploads the
model. Credentials reach rclone as `RCLONE_CONFIG_{IN,OUT}_*` from the Secret
(`RCLONE_WEBDAV_USER`, `RCLONE_WEBDAV_PASS` obscured as rclone wants it, or a plain `password`
that the step obscures through stdin) — never in args. The step's exit status names the failure
class, and the Job's podFailurePolicy fails the run at once when retrying cannot help (bad spec,
data unavailable).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from deepmarket.controller import MANAGED_BY, MANAGED_BY_LABEL
from deepmarket.controller.merge import overlay
from deepmarket.controller.ownership import controller_reference
from deepmarket.controller.podspec import restricted_container_security
from deepmarket.controller.training import step
from deepmarket.controller.training.resolve import DATA_DIR, Folder, Training

GPU = "nvidia.com/gpu"
COMPONENT = "training"
RUN_LABEL = "deepmarket.dev/trainingrun"
CONTAINER = "train"
TOOLS_DIR = "/deepmarket"
# Where runs that request no GPU go (nodeSelector pairs, tolerations): an operator option.
CpuPlacement = tuple[tuple[tuple[str, str], ...], tuple[dict[str, Any], ...]] | None
STEP_PATH = f"{TOOLS_DIR}/step.py"
# Copies this package's step program and the image's rclone next to the module's code.
TOOLS_SCRIPT = (
    "import shutil, deepmarket.controller.training.step as s; "
    f"shutil.copy(s.__file__, '{STEP_PATH}'); "
    f"shutil.copy(shutil.which('rclone'), '{TOOLS_DIR}/rclone')"
)


def job_labels(name: str, training: Training) -> dict[str, str]:
    # Not the DeepModule's instance label: its pod index must not see training pods.
    return {
        "app.kubernetes.io/name": training.module or "trainingrun",
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/part-of": "deepmarket",
        MANAGED_BY_LABEL: MANAGED_BY,
        RUN_LABEL: name,
    }


def owner_reference(run: Mapping[str, Any]) -> dict[str, Any]:
    return controller_reference(run, "TrainingRun")


def _secret_env(side: str, folder: Folder) -> list[dict[str, Any]]:
    """A remote's credentials straight from the Secret (optional keys: a Secret may hold the
    obscured `RCLONE_WEBDAV_PASS` or a plain `password`; a public folder needs none)."""
    if not folder.secret:
        return []

    def ref(env: str, key: str) -> dict[str, Any]:
        selector = {"name": folder.secret, "key": key, "optional": True}
        return {"name": env, "valueFrom": {"secretKeyRef": selector}}

    # The keys rclone's own RCLONE_WEBDAV_* variables use, so the same Secret also serves a
    # DeepModule's weights (its init container reads it with envFrom).
    return [
        ref(f"RCLONE_CONFIG_{side}_USER", "RCLONE_WEBDAV_USER"),
        ref(f"RCLONE_CONFIG_{side}_PASS", "RCLONE_WEBDAV_PASS"),
        ref(f"RCLONE_CONFIG_{side}_BEARER_TOKEN", "RCLONE_WEBDAV_BEARER_TOKEN"),
        ref(f"DEEPMARKET_{side}_PASSWORD", "password"),
    ]


def _remote_env(side: str, folder: Folder) -> list[dict[str, Any]]:
    return [
        {"name": f"RCLONE_CONFIG_{side}_TYPE", "value": "webdav"},
        {"name": f"RCLONE_CONFIG_{side}_URL", "value": folder.url},
        {"name": f"RCLONE_CONFIG_{side}_VENDOR", "value": folder.vendor},
        *_secret_env(side, folder),
    ]


def train_env(
    name: str, training: Training, progress_url: str | None, token: str | None
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "DEEPMARKET_RUN", "value": name},
        {"name": "DEEPMARKET_INPUT_URL", "value": training.input.url},
        {"name": "DEEPMARKET_OUTPUT_URL", "value": training.output.url},
        {"name": "DEEPMARKET_DATA_DIR", "value": DATA_DIR},
        {"name": "DEEPMARKET_MODEL_DIR", "value": training.model_dir},
        {"name": "DEEPMARKET_RCLONE", "value": f"{TOOLS_DIR}/rclone"},
        {"name": "DEEPMARKET_TRAIN_ARGS", "value": json.dumps(training.args, sort_keys=True)},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if training.model:
        env.append({"name": "DEEPMARKET_MODEL", "value": training.model})
        env.append({"name": "DEEPAAS_V2_MODEL", "value": training.model})
    if progress_url and token:
        env.append({"name": "DEEPMARKET_PROGRESS_URL", "value": progress_url})
        env.append({"name": "DEEPMARKET_PROGRESS_TOKEN", "value": token})
    env += _remote_env("IN", training.input) + _remote_env("OUT", training.output)
    seen = {e["name"] for e in env}
    env.extend(dict(e) for e in training.env if e.get("name") not in seen)
    return env


def _resources(training: Training) -> dict[str, Any]:
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if training.cpu:
        requests["cpu"] = training.cpu
    if training.memory:
        requests["memory"] = limits["memory"] = training.memory
    if training.gpu:
        requests[GPU] = limits[GPU] = str(training.gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _affinity(training: Training) -> dict[str, Any] | None:
    exprs: list[dict[str, Any]] = []
    if training.gpu_product:
        exprs.append(
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": [training.gpu_product]}
        )
    if training.gpu_memory_mb:
        exprs.append(
            {
                "key": "nvidia.com/gpu.memory",
                "operator": "Gt",
                "values": [str(training.gpu_memory_mb - 1)],
            }
        )
    if not exprs:
        return None
    terms = [{"matchExpressions": exprs}]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}}  # fmt: skip


def pod_template(
    name: str,
    training: Training,
    *,
    tools_image: str,
    tolerations: tuple[dict[str, Any], ...] = (),
    progress_url: str | None = None,
    token: str | None = None,
    cpu_placement: CpuPlacement = None,
) -> dict[str, Any]:
    tools_mount = {"name": "deepmarket-tools", "mountPath": TOOLS_DIR}
    train = {
        "name": CONTAINER,
        "image": training.image,
        "command": ["python3", STEP_PATH],
        "env": train_env(name, training, progress_url, token),
        "resources": _resources(training),
        "securityContext": restricted_container_security(),
        "terminationMessagePolicy": "File",  # the step writes its outcome there, as JSON
        "volumeMounts": [
            {**tools_mount, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "model", "mountPath": training.model_dir},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    tools = {
        "name": "tools",
        "image": tools_image,
        "command": ["python3", "-c", TOOLS_SCRIPT],
        "securityContext": restricted_container_security(),
        "volumeMounts": [tools_mount],
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # the Job retries (backoffLimit), not the kubelet
        "initContainers": [tools],
        "containers": [train],
        "automountServiceAccountToken": False,  # user code gets no cluster credentials
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [
            {"name": "deepmarket-tools", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "data", "emptyDir": {}},
            {"name": "model", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    tols = [dict(t) for t in tolerations]
    if training.gpu:
        tols.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    elif cpu_placement:
        selector, cpu_tolerations = cpu_placement
        if selector:
            spec["nodeSelector"] = dict(selector)
        tols.extend(dict(t) for t in cpu_tolerations if t not in tols)
    if tols:
        spec["tolerations"] = tols
    affinity = _affinity(training)
    if affinity:
        spec["affinity"] = affinity
    template = {"metadata": {"labels": job_labels(name, training)}, "spec": spec}
    if training.pod_template:
        template = overlay(template, training.pod_template)
        template["metadata"]["labels"].update(job_labels(name, training))
    return template


def build_job(
    run: Mapping[str, Any],
    training: Training,
    *,
    tools_image: str,
    tolerations: tuple[dict[str, Any], ...] = (),
    progress_url: str | None = None,
    token: str | None = None,
    cpu_placement: CpuPlacement = None,
) -> dict[str, Any]:
    meta = run["metadata"]
    name = meta["name"]
    policy = training.policy
    spec: dict[str, Any] = {
        "backoffLimit": policy.backoff_limit,
        "suspend": policy.suspend,
        # Fail at once when a retry cannot help; a node drain is not the training's fault.
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [step.EXIT_CONFIG, step.EXIT_DATA],
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": pod_template(
            name,
            training,
            tools_image=tools_image,
            tolerations=tolerations,
            progress_url=progress_url,
            token=token,
            cpu_placement=cpu_placement,
        ),
    }
    if policy.active_deadline_s:
        spec["activeDeadlineSeconds"] = int(policy.active_deadline_s)
    # No ttlSecondsAfterFinished on the Job: the operator deletes it after recording the outcome
    # (reconciler.py), so a short TTL or an operator outage can never lose a result.
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": job_labels(name, training),
            "ownerReferences": [owner_reference(run)],
        },
        "spec": spec,
    }


def job_token(job: Mapping[str, Any] | None) -> str | None:
    """The progress token a Job's pod was given (the operator checks posts against it)."""
    if not job:
        return None
    containers = job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    for container in containers:
        if container.get("name") != CONTAINER:
            continue
        for env in container.get("env") or ():
            if env.get("name") == "DEEPMARKET_PROGRESS_TOKEN":
                return env.get("value")
    return None
