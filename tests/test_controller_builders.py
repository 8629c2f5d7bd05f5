"""DeepModule spec (+ catalog) → children: the pure builders, no cluster."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from deepmarket.catalog.model import Catalog, Module
from deepmarket.controller.compare import up_to_date, with_hash
from deepmarket.controller.deepmodule.builders import desired_children, pod_template
from deepmarket.controller.deepmodule.resolve import SpecProblem, resolve
from deepmarket.controller.merge import overlay
from deepmarket.controller.options import Options

OPTS = Options()


def dm(spec: dict, name: str = "plants") -> dict:
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "DeepModule",
        "metadata": {"name": name, "namespace": "lab", "uid": "u-1", "generation": 1},
        "spec": spec,
    }


@pytest.fixture
def catalog() -> Catalog:
    data = {
        "runtime": {"image": "deephdc/plants:1.2.0", "model": "plants", "port": 5000},
        "resources": {"inference": {"cpu": 2, "memory_MB": 4096, "gpu": 1}},
        "categories": ["inference"],
    }
    return Catalog(Path(), [Module("plants", data, Path("catalog/plants"))])


def children(spec: dict, catalog: Catalog | None = None, knative: bool = False):
    obj = dm(spec)
    rt = resolve(obj["spec"], catalog)
    return rt, desired_children(obj, rt, OPTS, knative=knative)


def test_catalog_module_becomes_gpu_deployment_and_service(catalog):
    _, plan = children({"module": "plants"}, catalog)
    kinds = [o["kind"] for o in plan.objects]
    assert kinds == ["Deployment", "Service"]  # no HPA without a replica range
    deploy = plan.objects[0]
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "deephdc/plants:1.2.0"
    assert c["command"] == ["deepaas-run"]
    assert c["args"] == ["--listen-ip", "0.0.0.0", "--listen-port", "5000"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/models/"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 300
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["resources"]["requests"] == {"cpu": "2", "memory": "4096Mi", "nvidia.com/gpu": "1"}
    assert {"name": "DEEPAAS_V2_MODEL", "value": "plants"} in c["env"]
    pod = deploy["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    owner = deploy["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "u-1" and owner["controller"] is True
    assert deploy["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "deepmarket"
    assert deploy["spec"]["replicas"] == 1
    svc = plan.objects[1]
    assert svc["spec"]["selector"] == deploy["spec"]["selector"]["matchLabels"]


def test_restricted_pod_security(catalog):
    _, plan = children({"module": "plants"}, catalog)
    pod = plan.objects[0]["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


def test_spec_overrides_catalog_and_autoscaling_adds_hpa(catalog):
    rt, plan = children(
        {
            "module": "plants",
            "image": "ghcr.io/me/plants:2.0",
            "resources": {"gpu": 0, "memory": "1Gi"},
            "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilization": 60},
        },
        catalog,
    )
    assert rt.image == "ghcr.io/me/plants:2.0" and rt.resources.cpu == "2"
    deploy, _, hpa = plan.objects
    assert "replicas" not in deploy["spec"]  # the HPA owns the count
    assert "tolerations" not in deploy["spec"]["template"]["spec"]
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 5
    target = hpa["spec"]["metrics"][0]["resource"]["target"]
    assert target["averageUtilization"] == 60


def test_gpu_product_and_memory_select_nodes():
    _, plan = children(
        {"image": "x/y:1", "resources": {"gpu": 2, "gpuProduct": "A100", "gpuMemoryMB": 40000}}
    )
    terms = plan.objects[0]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["A100"]} in terms[0][
        "matchExpressions"
    ]
    assert {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["39999"]} in terms[0][
        "matchExpressions"
    ]


def test_scale_to_zero_without_knative_runs_one_replica_and_says_so():
    _, plan = children({"image": "x/y:1", "autoscaling": {"minReplicas": 0, "maxReplicas": 3}})
    assert plan.scale_to_zero_unavailable and not plan.serverless
    assert [o["kind"] for o in plan.objects] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    assert plan.objects[2]["spec"]["minReplicas"] == 1


def test_scale_to_zero_with_knative_is_one_knative_service():
    _, plan = children(
        {"image": "x/y:1", "autoscaling": {"minReplicas": 0, "maxReplicas": 3}}, knative=True
    )
    (ksvc,) = plan.objects
    assert ksvc["apiVersion"] == "serving.knative.dev/v1"
    tmpl = ksvc["spec"]["template"]
    assert tmpl["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "0"
    assert tmpl["spec"]["containers"][0]["ports"] == [{"name": "http1", "containerPort": 5000}]


def test_unknown_module_is_a_spec_problem_not_a_crash(catalog):
    with pytest.raises(SpecProblem) as err:
        resolve({"module": "nope"}, catalog)
    assert err.value.reason == "ModuleNotFound" and "nope" in err.value.message
    with pytest.raises(SpecProblem) as err:
        resolve({"module": "plants"}, None)
    assert err.value.reason == "CatalogUnavailable"
    # An explicit image works without the catalog.
    assert resolve({"module": "nope", "image": "a/b:1"}, catalog).image == "a/b:1"


def test_weights_from_training_run_add_an_init_container():
    runs = {
        "t1": {
            "spec": {"data": {"output": {"url": "https://dav", "secretRef": "cred"}}},
            "status": {"phase": "Succeeded", "output": {"url": "https://dav/x/"}},
        }
    }
    spec = {"image": "a/b:1", "weights": {"trainingRun": "t1"}}
    rt = resolve(spec, None, training_runs=runs)
    pod = pod_template("m", rt, OPTS)["spec"]
    assert pod["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "cred"}}]
    init = pod["initContainers"][0]
    assert init["args"] == ["copy", ":webdav:", "/weights", "--stats-one-line"]
    assert init["env"] == [{"name": "RCLONE_WEBDAV_URL", "value": "https://dav/x"}]
    with pytest.raises(SpecProblem) as err:
        resolve({"image": "a/b:1", "weights": {"trainingRun": "missing"}}, None)
    assert err.value.reason == "WeightsNotFound"


def test_pod_template_override_merges_by_name_and_keeps_selector():
    spec = {
        "image": "a/b:1",
        "env": [{"name": "A", "value": "1"}],
        "podTemplate": {
            "metadata": {"labels": {"app.kubernetes.io/instance": "hijack", "team": "x"}},
            "spec": {
                "nodeSelector": {"zone": "a"},
                "containers": [
                    {"name": "deepaas", "env": [{"name": "A", "value": "2"}]},
                    {"name": "sidecar", "image": "s/s:1"},
                ],
            },
        },
    }
    tmpl = pod_template("m", resolve(spec, None), OPTS)
    assert tmpl["metadata"]["labels"]["app.kubernetes.io/instance"] == "m"
    assert tmpl["metadata"]["labels"]["team"] == "x"
    containers = tmpl["spec"]["containers"]
    assert [c["name"] for c in containers] == ["deepaas", "sidecar"]
    assert containers[0]["env"] == [{"name": "A", "value": "2"}]
    assert containers[0]["image"] == "a/b:1"
    assert tmpl["spec"]["nodeSelector"] == {"zone": "a"}


def test_overlay_replaces_unnamed_lists():
    assert overlay({"a": [1, 2], "b": {"c": 1}}, {"a": [3], "b": {"d": 2}}) == {
        "a": [3],
        "b": {"c": 1, "d": 2},
    }


def test_builders_are_deterministic(catalog):
    _, a = children({"module": "plants"}, catalog)
    _, b = children({"module": "plants"}, catalog)
    assert [with_hash(o) for o in a.objects] == [with_hash(o) for o in b.objects]


def test_up_to_date_ignores_defaults_and_canonical_quantities(catalog):
    _, plan = children(
        {"module": "plants", "resources": {"memory": "2048Mi", "cpu": "0.5"}}, catalog
    )
    desired = with_hash(plan.objects[0])
    observed = copy.deepcopy(desired)
    c = observed["spec"]["template"]["spec"]["containers"][0]
    c["resources"]["requests"].update(memory="2Gi", cpu="500m")  # how the apiserver stores them
    c["terminationMessagePath"] = "/dev/termination-log"  # a default we never set
    observed["status"] = {"replicas": 1}
    assert up_to_date(observed, desired)
    c["image"] = "drifted/by-hand:9"
    assert not up_to_date(observed, desired)
    assert not up_to_date(None, desired)


def test_changed_spec_changes_the_hash_even_when_fields_are_only_removed(catalog):
    _, with_env = children({"module": "plants", "env": [{"name": "X", "value": "1"}]}, catalog)
    _, without = children({"module": "plants"}, catalog)
    observed = with_hash(with_env.objects[0])
    # Containment alone would call this up to date (X is extra); the hash does not.
    assert not up_to_date(observed, with_hash(without.objects[0]))
