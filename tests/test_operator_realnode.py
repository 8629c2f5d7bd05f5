"""The operator's claims on pods that really run (the real node): a DeepModule is Ready only
once `deepaas-run` answers its readiness probe, a crashing module shows CrashLoopBackOff, an
image that is not there shows the pull failure, and scaling adds real pods behind the Service.

The digits module's image is built locally (`deepmarket dev images`) under the catalog's
name; the DeepModules select the real node through `podTemplate` (its label and toleration).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest
from test_operator_cluster import ROOT, Operator, apply, condition, dm_of

from deepmarket.devcluster import nodeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

SEVEN = ROOT / "catalog" / "digits-classifier" / "samples" / "seven.png"
SMALL = {"cpu": "200m", "memory": "384Mi"}


@pytest.fixture(scope="module")
def real_installed(real_cluster):
    real_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "controller")
    )
    real_cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/deepmodules.deepmarket.dev",
    )
    # The operator runs as a local process here; its in-cluster Deployment stays at zero.
    real_cluster.kubectl(
        "scale", "-n", "deepmarket-system", "deployment/deepmarket-operator", "--replicas=0"
    )
    return real_cluster


@pytest.fixture(scope="module")
def real_operator(real_installed, tmp_path_factory):
    op = Operator(real_installed, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


def digits(name: str, **spec: object) -> dict:
    body = {
        "module": "digits-classifier",
        "resources": SMALL,
        "podTemplate": {"spec": nodeconfig.placement()},
        **spec,
    }
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "DeepModule",
        "metadata": {"name": name},
        "spec": body,
    }


def pods_of(cluster, ns: str, name: str) -> list[dict]:
    status, body = cluster.request(
        "GET", f"/api/v1/namespaces/{ns}/pods?labelSelector=app.kubernetes.io/instance%3D{name}"
    )
    assert status == 200, body
    return [p for p in body["items"] if not p["metadata"].get("deletionTimestamp")]


def pod_ready(p: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p.get("status", {}).get("conditions", [])
    )


def service_url(cluster, ns: str, name: str) -> str:
    status, svc = cluster.request("GET", f"/api/v1/namespaces/{ns}/services/{name}")
    assert status == 200, svc
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def predict(url: str, image: Path) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="data"; '
            f'filename="{image.name}"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        f"{url}/v2/models/digits/predict/",
        data=body,
        method="POST",
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Accept": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def wait_dm(cluster, ns: str, name: str, check, what: str, timeout: float = 300) -> dict:
    seen: dict = {}

    def ok() -> bool:
        seen["dm"] = dm_of(cluster, ns, name)
        return bool(seen["dm"]) and check(seen["dm"])

    try:
        cluster.wait_for(ok, f"DeepModule {name}: {what}", timeout=timeout)
    except Exception:
        pods = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout
        pytest.fail(
            f"{name} never {what}: {json.dumps((seen.get('dm') or {}).get('status'))}\n{pods}"
        )
    return seen["dm"]


def test_ready_only_once_deepaas_answers_and_predicts_through_the_service(
    real_operator, real_namespace
):
    cluster, ns = real_operator.cluster, real_namespace
    apply(cluster, ns, digits("digits"))
    # Until deepaas-run has warmed up and answers /v2/models/, the pod is not Ready and
    # neither is the module; every time the module says Ready, a pod really is.
    states: list[tuple[bool, bool]] = []

    def ready() -> bool:
        dm = dm_of(cluster, ns, "digits")
        pods = pods_of(cluster, ns, "digits")
        dm_ready = condition(dm, "Ready").get("status") == "True"
        states.append((dm_ready, any(pod_ready(p) for p in pods)))
        return dm_ready

    cluster.wait_for(ready, "DeepModule digits Ready on the real node", timeout=300)
    assert (False, False) in states, "never saw the module waiting for its server"
    assert all(pod_up for dm_up, pod_up in states if dm_up)
    (pod,) = pods_of(cluster, ns, "digits")
    assert pod["spec"]["nodeName"] == nodeconfig.NODE_NAME
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    url = service_url(cluster, ns, "digits")
    with urllib.request.urlopen(f"{url}/v2/models/", timeout=30) as resp:
        assert "digits" in resp.read().decode()
    result = predict(url, SEVEN)
    assert "7" in json.dumps(result)


def test_a_crashing_module_shows_crashloopbackoff(real_operator, real_namespace):
    cluster, ns = real_operator.cluster, real_namespace
    # deepaas-run exits at once when the model it is asked for is not installed.
    apply(cluster, ns, digits("crashing", model="no-such-model"))
    dm = wait_dm(
        cluster,
        ns,
        "crashing",
        lambda dm: condition(dm, "Degraded").get("reason") == "CrashLoopBackOff",
        "Degraded with CrashLoopBackOff",
    )
    assert condition(dm, "Ready")["status"] == "False"
    assert "crashing" in condition(dm, "Degraded")["message"]


def test_an_image_that_is_not_there_shows_the_pull_failure(real_operator, real_namespace):
    cluster, ns = real_operator.cluster, real_namespace
    missing = "ghcr.io/deepmarket/never-built:0.0.1"
    apply(cluster, ns, digits("ghost", image=missing))
    dm = wait_dm(
        cluster,
        ns,
        "ghost",
        lambda dm: condition(dm, "Degraded").get("reason") in ("ErrImagePull", "ImagePullBackOff"),
        "Degraded with the pull failure",
    )
    assert condition(dm, "Ready")["status"] == "False"
    assert missing in condition(dm, "Degraded")["message"]


def test_scaling_adds_real_pods_behind_the_service(real_operator, real_namespace):
    cluster, ns = real_operator.cluster, real_namespace
    apply(cluster, ns, digits("scaled", replicas=1))
    wait_dm(
        cluster,
        ns,
        "scaled",
        lambda dm: (dm.get("status") or {}).get("readyReplicas") == 1,
        "1 ready",
    )
    apply(cluster, ns, digits("scaled", replicas=2))
    wait_dm(
        cluster,
        ns,
        "scaled",
        lambda dm: (dm.get("status") or {}).get("readyReplicas") == 2,
        "2 ready",
    )
    pods = pods_of(cluster, ns, "scaled")
    assert len(pods) == 2 and all(pod_ready(p) for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} == {nodeconfig.NODE_NAME}
    ips = {p["status"]["podIP"] for p in pods}
    # Both pods are endpoints of the Service, and each really answers on its own address.
    status, slices = cluster.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
        "?labelSelector=kubernetes.io/service-name%3Dscaled",
    )
    assert status == 200
    ready = {
        address
        for s in slices["items"]
        for e in s.get("endpoints") or []
        if (e.get("conditions") or {}).get("ready")
        for address in e["addresses"]
    }
    assert ready == ips
    for ip in ips:
        with urllib.request.urlopen(f"http://{ip}:5000/v2/models/", timeout=30) as resp:
            assert resp.status == 200
