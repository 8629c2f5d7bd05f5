"""DeepModule → the Kubernetes objects that serve it (pure functions over plain dicts).

`desired_children` is the whole decision: which children should exist, with which content.
The I/O shell applies them with server-side apply; anything here must be deterministic so that
an unchanged DeepModule yields byte-identical objects (and therefore no writes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from deepmarket.controller import (
    COMPONENT,
    CONTAINER,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
)
from deepmarket.controller.deepmodule.resolve import Runtime
from deepmarket.controller.merge import overlay
from deepmarket.controller.options import Options
from deepmarket.controller.ownership import controller_reference
from deepmarket.controller.podspec import restricted_container_security

SERVICE_PORT = 80
GPU = "nvidia.com/gpu"
KNATIVE_API = "serving.knative.dev/v1"
# deepaas-run finishes warm() before it opens the port: allow slow model loads (10 minutes).
STARTUP_PERIOD_S = 10
STARTUP_FAILURES = 60


def selector_labels(name: str) -> dict[str, str]:
    """Immutable Deployment selector: only what never changes for one DeepModule."""
    return {INSTANCE_LABEL: name, "app.kubernetes.io/component": COMPONENT}


def labels(name: str, rt: Runtime) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": rt.module or "deepmodule",
        **selector_labels(name),
        "app.kubernetes.io/part-of": "deepmarket",
        MANAGED_BY_LABEL: MANAGED_BY,
    }
    return out


def owner_reference(dm: Mapping[str, Any]) -> dict[str, Any]:
    return controller_reference(dm, "DeepModule")


def _metadata(dm: Mapping[str, Any], rt: Runtime) -> dict[str, Any]:
    meta = dm["metadata"]
    return {
        "name": meta["name"],
        "namespace": meta["namespace"],
        "labels": labels(meta["name"], rt),
        "ownerReferences": [owner_reference(dm)],
    }


def _resources(rt: Runtime) -> dict[str, Any]:
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if rt.resources.cpu:
        requests["cpu"] = rt.resources.cpu
    if rt.resources.memory:
        # Memory is not compressible: limit == request keeps a leaking model from starving others.
        requests["memory"] = limits["memory"] = rt.resources.memory
    if rt.resources.gpu:
        requests[GPU] = limits[GPU] = str(rt.resources.gpu)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _env(rt: Runtime) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if rt.model:
        env.append({"name": "DEEPAAS_V2_MODEL", "value": rt.model})
    if rt.weights:
        env.append({"name": "DEEPMARKET_WEIGHTS_DIR", "value": rt.weights.mount_path})
    seen = {e["name"] for e in env}
    env.extend(dict(e) for e in rt.env if e["name"] not in seen)
    return env


def _probe(path: str, **extra: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, **extra}


def deepaas_container(rt: Runtime) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": rt.image,
        "command": ["deepaas-run"],
        "args": ["--listen-ip", "0.0.0.0", "--listen-port", str(rt.port)],
        "ports": [{"name": "http", "containerPort": rt.port, "protocol": "TCP"}],
        "env": _env(rt),
        "readinessProbe": _probe("/v2/models/", periodSeconds=10, failureThreshold=3),
        "livenessProbe": _probe("/v2/", periodSeconds=20, failureThreshold=3, timeoutSeconds=5),
        "startupProbe": _probe(
            "/v2/", periodSeconds=STARTUP_PERIOD_S, failureThreshold=STARTUP_FAILURES
        ),
        "resources": _resources(rt),
        "securityContext": restricted_container_security(),
    }
    if not container["env"]:
        del container["env"]
    if rt.env_from:
        container["envFrom"] = [dict(e) for e in rt.env_from]
    if rt.weights:
        container["volumeMounts"] = [
            {"name": "weights", "mountPath": rt.weights.mount_path, "readOnly": True}
        ]
    return container


def _weights_init(rt: Runtime, options: Options) -> dict[str, Any]:
    assert rt.weights is not None
    init: dict[str, Any] = {
        "name": "fetch-weights",
        "image": options.weights_image,
        # rclone by name, not the image's entrypoint: any image with rclone on its PATH serves
        # (rclone/rclone, or the operator's own image, which carries it for TrainingRuns).
        "command": ["rclone"],
        # An on-the-fly rclone remote. Its URL is an option in the environment, never part of
        # the remote string, where a quote or comma in it would be parsed as more options;
        # credentials come from the secret's RCLONE_WEBDAV_USER/RCLONE_WEBDAV_PASS.
        "args": ["copy", ":webdav:", "/weights", "--stats-one-line"],
        "env": [{"name": "RCLONE_WEBDAV_URL", "value": rt.weights.url}],
        "volumeMounts": [{"name": "weights", "mountPath": "/weights"}],
        "securityContext": restricted_container_security(),
    }
    if rt.weights.secret:
        init["envFrom"] = [{"secretRef": {"name": rt.weights.secret}}]
    return init


def _affinity(rt: Runtime) -> dict[str, Any] | None:
    exprs: list[dict[str, Any]] = []
    if rt.resources.gpu_product:
        exprs.append(
            {
                "key": "nvidia.com/gpu.product",
                "operator": "In",
                "values": [rt.resources.gpu_product],
            }
        )
    if rt.resources.gpu_memory_mb:
        # Node labels are strings; Gt compares them as integers (MiB, as NVIDIA's GFD writes them).
        exprs.append(
            {
                "key": "nvidia.com/gpu.memory",
                "operator": "Gt",
                "values": [str(rt.resources.gpu_memory_mb - 1)],
            }
        )
    if not exprs:
        return None
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": exprs}]
            }
        }
    }


def pod_template(name: str, rt: Runtime, options: Options) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [deepaas_container(rt)],
        "automountServiceAccountToken": False,  # a model server has no business with the API
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    tolerations = [dict(t) for t in options.tolerations]
    if rt.resources.gpu:
        tolerations.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        spec["tolerations"] = tolerations
    affinity = _affinity(rt)
    if affinity:
        spec["affinity"] = affinity
    if rt.weights:
        spec["initContainers"] = [_weights_init(rt, options)]
        spec["volumes"] = [{"name": "weights", "emptyDir": {}}]
    template = {"metadata": {"labels": labels(name, rt)}, "spec": spec}
    if rt.pod_template:
        template = overlay(template, rt.pod_template)
        # The selector labels must survive any override, or the Deployment would orphan pods.
        template["metadata"]["labels"].update(selector_labels(name))
    return template


def build_deployment(dm: Mapping[str, Any], rt: Runtime, options: Options) -> dict[str, Any]:
    name = dm["metadata"]["name"]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(name)},
        "revisionHistoryLimit": 3,
        "template": pod_template(name, rt, options),
    }
    if not rt.scaling.autoscaled:
        # With an HPA the replica count is the autoscaler's field, never ours.
        spec["replicas"] = rt.scaling.min
    if rt.resources.gpu:
        # GPUs are scarce: replace pods one at a time instead of asking for a surge GPU.
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(dm, rt),
        "spec": spec,
    }


def build_service(dm: Mapping[str, Any], rt: Runtime) -> dict[str, Any]:
    name = dm["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(dm, rt),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def build_hpa(dm: Mapping[str, Any], rt: Runtime) -> dict[str, Any]:
    name = dm["metadata"]["name"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(dm, rt),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": max(1, rt.scaling.min),
            "maxReplicas": rt.scaling.max,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": rt.scaling.target_cpu,
                        },
                    },
                }
            ],
        },
    }


def build_knative_service(dm: Mapping[str, Any], rt: Runtime, options: Options) -> dict[str, Any]:
    """Scale-to-zero through Knative Serving: one revision template instead of Deployment+HPA."""
    name = dm["metadata"]["name"]
    template = pod_template(name, rt, options)
    container = template["spec"]["containers"][0]
    # Knative owns the port (one, named http1) and probes the container port itself.
    container["ports"] = [{"name": "http1", "containerPort": rt.port}]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        container[probe]["httpGet"].pop("port", None)
    template["metadata"]["annotations"] = {
        "autoscaling.knative.dev/min-scale": str(rt.scaling.min),
        "autoscaling.knative.dev/max-scale": str(rt.scaling.max),
    }
    return {
        "apiVersion": KNATIVE_API,
        "kind": "Service",
        "metadata": _metadata(dm, rt),
        "spec": {"template": template},
    }


@dataclass(frozen=True)
class Plan:
    """The children one DeepModule should have, and how it is served."""

    objects: list[dict[str, Any]]
    serverless: bool
    scale_to_zero_unavailable: bool = False
    notes: list[str] = field(default_factory=list)


def desired_children(
    dm: Mapping[str, Any], rt: Runtime, options: Options, *, knative: bool
) -> Plan:
    if rt.scaling.scale_to_zero and knative:
        return Plan([build_knative_service(dm, rt, options)], serverless=True)
    fallback = rt.scaling.scale_to_zero and not knative
    if fallback:
        # Never scale a module to nothing silently: run one replica and say why (ScaleToZero).
        rt = _with_min(rt, 1)
    objects = [build_deployment(dm, rt, options), build_service(dm, rt)]
    if rt.scaling.autoscaled:
        objects.append(build_hpa(dm, rt))
    return Plan(objects, serverless=False, scale_to_zero_unavailable=fallback)


def _with_min(rt: Runtime, n: int) -> Runtime:
    return replace(rt, scaling=replace(rt.scaling, min=n))


def internal_url(name: str, namespace: str, options: Options) -> str:
    return f"http://{name}.{namespace}.svc.{options.cluster_domain}/"


def external_url(name: str, namespace: str, options: Options) -> str | None:
    """The public URL, by the marketplace's try-it scheme (DEEPMARKET_DEPLOY_BASE_URL):
    `{id}` (and `{namespace}`) in the base are replaced, else `/<name>/` is appended."""
    base = (options.ingress_base or "").strip()
    if not base:
        return None
    if "{id}" in base:
        url = base.replace("{id}", name).replace("{namespace}", namespace)
    else:
        url = f"{base.rstrip('/')}/{name}"
    return url.rstrip("/") + "/"
