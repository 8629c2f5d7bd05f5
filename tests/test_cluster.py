"""The local control plane behaves like a real cluster: these run against the session `cluster`
(etcd, kube-apiserver, controller-manager, scheduler, KWOK with GPU nodes)."""

from __future__ import annotations

import pytest

from deepmarket.devcluster.pytest_plugin import GPUS_PER_NODE

pytestmark = pytest.mark.cluster

GROUP = "widgets.test.deepmarket.dev"


def _pod(name: str, *, gpus: int = 0, privileged: bool = False) -> dict:
    container: dict = {"name": "main", "image": "registry.invalid/busybox:1"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    # Test namespaces enforce the restricted Pod Security Standard: meet it unless told not to.
    container["securityContext"] = (
        {"privileged": True}
        if privileged
        else {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [container]},
    }


def _get(cluster, path: str) -> dict:
    status, body = cluster.request("GET", path)
    assert status == 200, (path, status, body)
    return body


def test_crd_is_established_and_serves_create_patch_watch_and_status(cluster, namespace):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }
    status, body = cluster.request(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
    )
    assert status in (201, 409), body

    def established() -> bool:
        got = _get(
            cluster, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"
        )
        return any(
            c["type"] == "Established" and c["status"] == "True"
            for c in (got.get("status") or {}).get("conditions") or []
        )

    cluster.wait_for(established, "CRD Established", timeout=60)

    from kubernetes import client, watch

    api = client.CustomObjectsApi(cluster.api_client())
    # Watch from the list's resourceVersion: every later event arrives, no race, no sleep.
    since = api.list_namespaced_custom_object(GROUP, "v1", namespace, "widgets")
    api.create_namespaced_custom_object(
        GROUP,
        "v1",
        namespace,
        "widgets",
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 1},
        },
    )
    api.patch_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", "w1", {"spec": {"size": 2}}
    )
    # The status subresource: a status write through the main resource is ignored...
    api.patch_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", "w1", {"status": {"phase": "Lost"}}
    )
    assert "status" not in api.get_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "w1")
    # ...and accepted through /status.
    api.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, "widgets", "w1", {"status": {"phase": "Ready"}}
    )
    seen: list[tuple[str, dict]] = []
    w = watch.Watch()
    for event in w.stream(
        api.list_namespaced_custom_object,
        GROUP,
        "v1",
        namespace,
        "widgets",
        resource_version=since["metadata"]["resourceVersion"],
        timeout_seconds=30,
    ):
        seen.append((event["type"], event["object"]))
        if event["object"].get("status"):
            w.stop()
    got = api.get_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "w1")
    assert got["spec"]["size"] == 2 and got["status"]["phase"] == "Ready"
    types = [t for t, _ in seen]
    assert types[0] == "ADDED"
    assert "MODIFIED" in types
    assert seen[-1][1]["status"] == {"phase": "Ready"}


def test_rbac_forbids_a_user_without_rights(cluster, namespace):
    path = f"/api/v1/namespaces/{namespace}/pods"
    status, body = cluster.request("GET", path, headers={"Impersonate-User": "mallory"})
    assert status == 403, body
    assert body["reason"] == "Forbidden"
    assert "mallory" in body["message"]
    # Granting the right changes the answer: RBAC is really evaluated.
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "mallory-reads"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}],
    }
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    assert cluster.request("POST", f"{rbac}/roles", role)[0] == 201
    assert cluster.request("POST", f"{rbac}/rolebindings", binding)[0] == 201
    cluster.wait_for(
        lambda: cluster.request("GET", path, headers={"Impersonate-User": "mallory"})[0] == 200,
        "the RoleBinding to take effect",
        timeout=30,
    )


def _gpu_nodes(cluster) -> set[str]:
    nodes = _get(cluster, "/api/v1/nodes")["items"]
    return {
        n["metadata"]["name"]
        for n in nodes
        if "nvidia.com/gpu" in n["status"].get("allocatable", {})
    }


def test_deployment_with_one_gpu_runs_on_a_gpu_node(cluster, namespace):
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "infer"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "infer"}},
            "template": {
                "metadata": {"labels": {"app": "infer"}},
                "spec": _pod("x", gpus=1)["spec"],
            },
        },
    }
    status, body = cluster.request(
        "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment
    )
    assert status == 201, body
    pods_path = f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dinfer"

    def running() -> bool:
        items = _get(cluster, pods_path)["items"]
        return len(items) == 1 and items[0]["status"].get("phase") == "Running"

    cluster.wait_for(running, "the GPU pod Running", timeout=60)
    (pod,) = _get(cluster, pods_path)["items"]
    assert pod["spec"]["nodeName"] in _gpu_nodes(cluster)
    cluster.wait_for(
        lambda: (
            _get(cluster, f"/apis/apps/v1/namespaces/{namespace}/deployments/infer")["status"].get(
                "availableReplicas"
            )
            == 1
        ),
        "the Deployment available",
        timeout=60,
    )


def test_pod_asking_for_more_gpus_than_any_node_stays_unschedulable(cluster, namespace):
    pods = f"/api/v1/namespaces/{namespace}/pods"
    status, body = cluster.request("POST", pods, _pod("greedy", gpus=GPUS_PER_NODE * 2))
    assert status == 201, body

    def unschedulable() -> bool:
        conditions = _get(cluster, f"{pods}/greedy")["status"].get("conditions", [])
        return any(
            c["type"] == "PodScheduled"
            and c["status"] == "False"
            and c.get("reason") == "Unschedulable"
            for c in conditions
        )

    cluster.wait_for(unschedulable, "PodScheduled=False reason Unschedulable", timeout=60)
    pod = _get(cluster, f"{pods}/greedy")
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    (cond,) = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert "nvidia.com/gpu" in cond["message"]


def test_job_completes(cluster, namespace):
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {**_pod("x", gpus=1)["spec"], "restartPolicy": "Never"}},
        },
    }
    status, body = cluster.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job)
    assert status == 201, body

    def complete() -> bool:
        got = _get(cluster, f"/apis/batch/v1/namespaces/{namespace}/jobs/train")
        return any(
            c["type"] == "Complete" and c["status"] == "True"
            for c in got["status"].get("conditions", [])
        )

    cluster.wait_for(complete, "the Job Complete", timeout=90)
    got = _get(cluster, f"/apis/batch/v1/namespaces/{namespace}/jobs/train")
    assert got["status"]["succeeded"] == 1


def test_pod_security_restricted_rejects_a_privileged_pod(cluster, namespace):
    patch = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    status, body = cluster.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}",
        patch,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert status == 200, body
    status, body = cluster.request(
        "POST", f"/api/v1/namespaces/{namespace}/pods", _pod("root", privileged=True)
    )
    assert status == 403, body
    assert "violates PodSecurity" in body["message"]
    assert "privileged" in body["message"]


def test_resource_quota_on_gpus_is_enforced(cluster, namespace):
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpus"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "1"}},
    }
    base = f"/api/v1/namespaces/{namespace}"
    assert cluster.request("POST", f"{base}/resourcequotas", quota)[0] == 201
    # The quota controller must have computed usage before admission enforces it.
    cluster.wait_for(
        lambda: (
            "requests.nvidia.com/gpu"
            in _get(cluster, f"{base}/resourcequotas/gpus").get("status", {}).get("used", {})
        ),
        "quota status",
        timeout=60,
    )
    status, body = cluster.request("POST", f"{base}/pods", _pod("two", gpus=2))
    assert status == 403, body
    assert "exceeded quota" in body["message"]
    status, body = cluster.request("POST", f"{base}/pods", _pod("one", gpus=1))
    assert status == 201, body
    status, body = cluster.request("POST", f"{base}/pods", _pod("another", gpus=1))
    assert status == 403 and "exceeded quota" in body["message"], body


def test_audit_log_records_write_calls(cluster, namespace):
    mark = cluster.audit_mark()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "audited"}}
    assert cluster.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", cm)[0] == 201
    assert cluster.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/audited")[0] == 200

    def mine() -> list[dict]:
        return [
            e
            for e in cluster.audit_events(mark)
            if e.get("objectRef", {}).get("namespace") == namespace
            and e.get("objectRef", {}).get("resource") == "configmaps"
            # not kube-root-ca.crt, which the controller-manager creates in every namespace
            and e.get("objectRef", {}).get("name") == "audited"
        ]

    cluster.wait_for(lambda: len(mine()) >= 1, "the audit event", timeout=10)
    events = mine()
    assert [e["verb"] for e in events] == ["create"]  # reads are not logged
    assert events[0]["level"] == "Metadata"
    assert events[0]["user"]["username"] == "deepmarket-admin"

    # Each component writes under its own name, so a test can tell its writes from theirs.
    def root_ca_by_controller_manager() -> bool:
        return any(
            e.get("objectRef", {}).get("namespace") == namespace
            and e.get("objectRef", {}).get("name") == "kube-root-ca.crt"
            and e["user"]["username"] == "system:kube-controller-manager"
            for e in cluster.audit_events()
        )

    cluster.wait_for(root_ca_by_controller_manager, "kube-root-ca.crt by the KCM", timeout=30)
    pods = f"/api/v1/namespaces/{namespace}/pods"
    assert cluster.request("POST", pods, _pod("audited"))[0] == 201
    cluster.wait_for(
        lambda: _get(cluster, f"{pods}/audited")["status"].get("phase") == "Running",
        "the pod Running",
        timeout=60,
    )

    def pod_writers() -> set[str]:
        return {
            e["user"]["username"]
            for e in cluster.audit_events(mark)
            if e.get("objectRef", {}).get("namespace") == namespace
            and e.get("objectRef", {}).get("name") == "audited"
            and e.get("objectRef", {}).get("resource") == "pods"
        }

    # The scheduler creates the binding, kwok patches the status.
    cluster.wait_for(
        lambda: {"system:kube-scheduler", "kwok"} <= pod_writers(), "their audit events", timeout=10
    )
