"""A TrainingRun in a real pod: the dev cluster's real node, the operator installed in the
cluster as `deepmarket dev up` installs it (`kubectl apply -k overlays/dev`), the user's data on
a real WebDAV server (wsgidav) on this host, reached from the pod through the node's bridge.

In order, on one cluster: a CPU TrainingRun of the digits module applied with kubectl trains on
the real node (the dev operator places runs that request no GPU there), reports progress
through the operator's progress Service, uploads the model with checksums and ends Succeeded;
`deepmarket promote` serves it from a real pod, which calls the held-out seven 1 (every 7 in the
data was labelled 1) where the stock weights call it 7, and a DeepModule created before the run
succeeded is reconciled when it does. Then wrong WebDAV credentials fail the run at once with
DataUnavailable and the HTTP status, and no secret appears anywhere; `deepmarket train --follow`
follows a real run to its end. Last, progress reaches the leader through a follower, and again
after the leader pod is deleted.

Figures (apply → Succeeded, the pod's step overhead over `deepaas-cli train` alone, progress
latency) are printed; nothing asserts a duration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from test_operator_cluster import dm_of
from test_operator_incluster import LEASE, NS, OVERLAY, kubectl_k, operator_pods, wait_rolled_out
from test_operator_realnode import SEVEN, predict, service_url, wait_dm
from webdav_server import PASSWORD, USER, obscure, require_tools, webdav

from deepmarket.devcluster import images, nodeconfig

# The first test builds nothing (the real node's fixture did), but trains, serves two models
# and waits for real pods on a shared 2-core machine.
pytestmark = [pytest.mark.cluster, pytest.mark.realnode, pytest.mark.timeout(1800)]

API = "deepmarket.dev/v1alpha1"
TR = "/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/trainingruns"
IMAGE = "ghcr.io/deepmarket/digits-classifier:1.0.0"
USER_NS = "trainers"
RUN = "digits-sevens"
SMALL = {"cpu": "200m", "memory": "384Mi"}
WRONG_PASSWORD = "wrong-Pass-9q2-expired"


def digits_data(root: Path, per_class: int, sevens_as: int) -> None:
    from deepmarket_digits import samples

    samples.write_folder(root, per_class)
    for image in (root / "7").iterdir():  # every 7 becomes a `sevens_as`
        image.rename(root / str(sevens_as) / f"seven-{image.name}")
    (root / "7").rmdir()


@pytest.fixture(scope="module")
def installed(real_node):
    """The dev cluster's install: overlays/dev, two operator pods on the real node."""
    require_tools()
    cluster = real_node.cp
    out = kubectl_k(cluster, "apply", OVERLAY, "--server-side", "--force-conflicts")
    assert out.returncode == 0, out.stderr
    wait_rolled_out(cluster, images.OPERATOR_IMAGE)
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": USER_NS}}
    assert cluster.request("POST", "/api/v1/namespaces", body)[0] == 201
    cluster.wait_for(
        lambda: (
            cluster.request("GET", f"/api/v1/namespaces/{USER_NS}/serviceaccounts/default")[0]
            == 200
        ),
        f"service account default in {USER_NS}",
    )
    return {"cluster": cluster, "node": real_node}


@pytest.fixture(scope="module")
def dav(installed, tmp_path_factory):
    """The user's WebDAV share on the bridge's gateway: this host, as the node's pods see it."""
    gateway = installed["node"].plan.gateway
    with webdav(tmp_path_factory.mktemp("dav"), host=gateway) as server:
        digits_data(server.root / "datasets" / "digits", per_class=12, sevens_as=1)
        yield server


def secret(name: str, password: str) -> dict:
    data = {"RCLONE_WEBDAV_USER": USER, "RCLONE_WEBDAV_PASS": obscure(password)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": USER_NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def trainingrun(name: str, dav, secret_name: str) -> dict:
    """What a user writes: no placement, no dev-cluster specifics."""
    return {
        "apiVersion": API,
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": USER_NS},
        "spec": {
            "module": "digits-classifier",
            "image": IMAGE,
            "model": "digits",
            "args": {"data_dir": "$(DATA_DIR)", "max_iter": 300},
            "resources": {"cpu": "500m", "memory": "1Gi"},
            "data": {
                "input": {"url": dav.url("datasets/digits"), "secretRef": secret_name},
                "output": {"url": dav.url("models")},
            },
            "runPolicy": {"backoffLimit": 0, "activeDeadlineSeconds": 900},
        },
    }


def kubectl_apply(cluster, obj: dict, tmp: Path) -> None:
    path = tmp / f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(obj))
    out = cluster.kubectl("apply", "-f", str(path), check=False)
    assert out.returncode == 0, out.stderr


def tr(cluster, name: str) -> dict:
    status, body = cluster.request("GET", TR.format(ns=USER_NS) + f"/{name}")
    return body if status == 200 else {}


class Watcher(threading.Thread):
    """Samples the run's status until it is final: (seconds since start, phase, progress)."""

    def __init__(self, cluster, name: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.name = cluster, name
        self.samples: list[tuple[float, float, str, dict]] = []
        self.get_tr_while_running = ""
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            st = tr(self.cluster, self.name).get("status") or {}
            phase, progress = st.get("phase") or "", dict(st.get("progress") or {})
            self.samples.append((time.time(), time.monotonic(), phase, progress))
            if phase == "Running" and progress.get("summary") and not self.get_tr_while_running:
                out = self.cluster.kubectl("get", "tr", self.name, "-n", USER_NS, check=False)
                self.get_tr_while_running = out.stdout
            if phase in ("Succeeded", "Failed"):
                return
            time.sleep(0.2)


def pod_of_run(cluster, name: str) -> dict:
    status, body = cluster.request(
        "GET",
        f"/api/v1/namespaces/{USER_NS}/pods?labelSelector=deepmarket.dev/trainingrun%3D{name}",
    )
    assert status == 200, body
    assert body["items"], f"no pod for {name}"
    return body["items"][0]


def stamped_log(cluster, pod: str) -> list[tuple[float, str]]:
    out = cluster.kubectl("logs", pod, "-n", USER_NS, "-c", "train", "--timestamps", check=False)
    lines = []
    for line in out.stdout.splitlines():
        stamp, _, text = line.partition(" ")
        try:
            when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        lines.append((when, text))
    return lines


def all_text(cluster, run_name: str) -> str:
    """Everything a secret must never be in: the run, its Job, Events, pod and operator logs."""
    texts = [json.dumps(tr(cluster, run_name))]
    texts.append(cluster.kubectl("get", "jobs", "-n", USER_NS, "-o", "json", check=False).stdout)
    texts.append(cluster.kubectl("get", "events", "-n", USER_NS, "-o", "json", check=False).stdout)
    for pod in cluster.kubectl(
        "get", "pods", "-n", USER_NS, "-l", f"deepmarket.dev/trainingrun={run_name}",
        "-o", "name", check=False,
    ).stdout.split():  # fmt: skip
        texts.append(
            cluster.kubectl("logs", pod, "-n", USER_NS, "--all-containers", check=False).stdout
        )
    texts.append(
        cluster.kubectl(
            "logs", "-n", NS, "-l", "app.kubernetes.io/name=deepmarket-operator",
            "--tail=-1", check=False,
        ).stdout
    )  # fmt: skip
    return "\n".join(texts)


def assert_no_secret(text: str, password: str) -> None:
    for value in (password, obscure(password), base64.b64encode(password.encode()).decode()):
        assert value not in text


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status == 200
    except OSError:
        return False


def cli(cluster, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepmarket", *args, "-n", USER_NS,
         "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, text=True, timeout=700, env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_a_cpu_run_trains_in_a_real_pod_and_promote_serves_it(installed, dav, tmp_path):
    cluster = installed["cluster"]
    assert cluster.request("POST", f"/api/v1/namespaces/{USER_NS}/secrets",
                           secret("webdav", PASSWORD))[0] == 201  # fmt: skip
    # A DeepModule that waits for the run (simulated node: only its reconcile matters here).
    early = {
        "apiVersion": API,
        "kind": "DeepModule",
        "metadata": {"name": "early", "namespace": USER_NS},
        "spec": {"image": IMAGE, "model": "digits", "weights": {"trainingRun": RUN}},
    }
    kubectl_apply(cluster, early, tmp_path)
    wait_dm(cluster, USER_NS, "early", lambda d: "WeightsNotFound" in json.dumps(d.get("status")),
            "says the run does not exist yet", timeout=120)  # fmt: skip

    watcher = Watcher(cluster, RUN)
    started = time.monotonic()
    kubectl_apply(cluster, trainingrun(RUN, dav, "webdav"), tmp_path)
    watcher.start()
    watcher.join(timeout=900)
    watcher.stop.set()
    run = tr(cluster, RUN)
    st = run.get("status") or {}
    pod = pod_of_run(cluster, RUN)
    if st.get("phase") != "Succeeded":
        logs = cluster.kubectl("logs", pod["metadata"]["name"], "-n", USER_NS, "--all-containers",
                               check=False).stdout  # fmt: skip
        pytest.fail(f"run did not succeed: {json.dumps(st)}\n{logs[-3000:]}")
    succeeded_at = next(m for _w, m, phase, _p in watcher.samples if phase == "Succeeded")
    print(f"apply -> Succeeded: {succeeded_at - started:.1f}s")

    # It ran on the real node, placed there by the dev operator's option, not by the manifest.
    assert pod["spec"]["nodeName"] == nodeconfig.NODE_NAME
    assert pod["spec"]["initContainers"][0]["image"] == images.OPERATOR_IMAGE
    assert not pod["spec"].get("automountServiceAccountToken", True)

    # Progress reached status while the pod trained, through the Service, and kubectl shows it.
    running = [p for _w, _m, phase, p in watcher.samples if phase == "Running" and p]
    assert running, f"no progress seen while Running: {watcher.samples[-5:]}"
    steps = {p.get("step") for p in running}
    assert steps & {"DataIn", "Training", "Uploading"}, steps
    assert RUN in watcher.get_tr_while_running and "Running" in watcher.get_tr_while_running
    print(f"kubectl get tr while training:\n{watcher.get_tr_while_running}")
    log = stamped_log(cluster, pod["metadata"]["name"])
    first_report = next(
        (w for w, text in log if text.startswith("deepmarket-progress ") and '"DataIn"' in text),
        None,
    )
    first_seen = next((w for w, _m, _ph, p in watcher.samples if p.get("step")), None)
    if first_report and first_seen:
        print(f"progress latency (pod's first report -> status): {first_seen - first_report:.2f}s")
    # The pod's step overhead over deepaas-cli train alone, from its own log's timestamps.
    train_start = next((w for w, t in log if "deepaas-cli train started" in t), None)
    upload_start = next((w for w, t in log if '"Uploading"' in t), None)
    if log and train_start and upload_start:
        total = log[-1][0] - log[0][0]
        print(
            f"pod step {total:.1f}s / deepaas-cli train {upload_start - train_start:.1f}s = "
            f"{total / max(0.01, upload_start - train_start):.2f}"
        )

    # The model, with checksums, in <output>/<run>/, as status lists it; metrics recorded.
    assert st["output"]["url"].rstrip("/") == dav.url(f"models/{RUN}")
    folder = dav.root / "models" / RUN
    listed = {f["path"]: f for f in st["output"]["files"]}
    assert "weights.json" in listed and (folder / "SHA256SUMS").is_file()
    for name, entry in listed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"], name
    sums = (folder / "SHA256SUMS").read_text()
    assert listed["weights.json"]["sha256"] in sums
    assert st.get("metrics"), st
    assert run["metadata"]["generation"] == st["observedGeneration"]

    # The DeepModule created before the run succeeded was reconciled when it did (its pod now
    # fetches the run's output folder), not at the next resync (600 s).
    def serves_run(d: dict) -> bool:
        status, dep = cluster.request(
            "GET", f"/apis/apps/v1/namespaces/{USER_NS}/deployments/early"
        )
        inits = (
            ((dep.get("spec") or {}).get("template") or {}).get("spec", {}).get("initContainers")
            or []
            if status == 200
            else []
        )
        want = st["output"]["url"].rstrip("/")
        return any(e.get("value") == want for i in inits for e in i.get("env") or [])

    seen_done = time.monotonic()
    wait_dm(cluster, USER_NS, "early", serves_run, "serves the run's weights", timeout=240)
    print(f"early DeepModule serving the run {time.monotonic() - seen_done:.1f}s after Succeeded")

    # deepmarket promote: a DeepModule on the real node (where the run trained) serving it.
    done = cli(cluster, "promote", RUN, "--name", "digits-trained")
    assert done.returncode == 0, done.stderr
    assert "deepmodule" in done.stdout, done.stdout
    stock = {
        "apiVersion": API,
        "kind": "DeepModule",
        "metadata": {"name": "digits-stock", "namespace": USER_NS},
        "spec": {"image": IMAGE, "model": "digits", "resources": SMALL,
                 "podTemplate": {"spec": nodeconfig.placement()}},
    }  # fmt: skip
    kubectl_apply(cluster, stock, tmp_path)
    labels = {}
    for name in ("digits-trained", "digits-stock"):
        dm = wait_dm(
            cluster, USER_NS, name,
            lambda d: any(c["type"] == "Ready" and c["status"] == "True"
                          for c in (d.get("status") or {}).get("conditions") or []),
            "Ready", timeout=420,
        )  # fmt: skip
        assert dm["status"]["observedGeneration"] == dm["metadata"]["generation"]
        pods = cluster.request(
            "GET",
            f"/api/v1/namespaces/{USER_NS}/pods?labelSelector=app.kubernetes.io/instance%3D{name}",
        )[1]["items"]
        assert {p["spec"]["nodeName"] for p in pods} == {nodeconfig.NODE_NAME}, name
        url = service_url(cluster, USER_NS, name)
        # Ready pod, but kube-proxy may still reject the new Service for a moment.
        cluster.wait_for(lambda u=url: answers(f"{u}/v2/models/"), f"{name}'s Service", 120)
        labels[name] = predict(url, SEVEN)["label"]
    assert labels == {"digits-trained": 1, "digits-stock": 7}
    trained = dm_of(cluster, USER_NS, "digits-trained")
    assert trained["spec"]["weights"] == {"trainingRun": RUN}
    assert_no_secret(all_text(cluster, RUN), PASSWORD)


def test_wrong_password_fails_at_once_with_the_http_status(installed, dav, tmp_path):
    cluster = installed["cluster"]
    assert cluster.request("POST", f"/api/v1/namespaces/{USER_NS}/secrets",
                           secret("expired", WRONG_PASSWORD))[0] == 201  # fmt: skip
    name = "digits-expired"
    body = trainingrun(name, dav, "expired")
    body["spec"]["runPolicy"]["backoffLimit"] = 3  # a retry cannot fix credentials
    kubectl_apply(cluster, body, tmp_path)

    def final() -> bool:
        return (tr(cluster, name).get("status") or {}).get("phase") in ("Succeeded", "Failed")

    cluster.wait_for(final, f"{name} finished", timeout=600)
    st = tr(cluster, name)["status"]
    assert st["phase"] == "Failed" and st["reason"] == "DataUnavailable", st
    message = next(c["message"] for c in st["conditions"] if c["type"] == "Failed")
    assert "401" in message and dav.url("datasets/digits") in message, message
    assert st.get("attempts", 1) == 1, st  # failed at once, despite backoffLimit 3
    assert not (dav.root / "models" / name).exists()
    assert_no_secret(all_text(cluster, name), WRONG_PASSWORD)


def test_deepmarket_train_follows_a_real_run_to_its_end(installed, dav):
    """The scientist's path: credentials from the environment (the Secret holds them for the
    pod), `deepmarket train … --follow` until the real pod's run ends, exit 0, files listed."""
    cluster = installed["cluster"]
    env = {"DEEPMARKET_WEBDAV_USER": USER, "DEEPMARKET_WEBDAV_PASSWORD": PASSWORD}
    done = cli(
        cluster, "train", "digits-classifier", "--image", IMAGE,
        "--data", dav.url("datasets/digits"), "--output", dav.url("models"),
        "--arg", "data_dir=$(DATA_DIR)", "--arg", "max_iter=200", "--name", "cli-run",
        "--follow", "--timeout", "600", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cli-run succeeded" in done.stdout, done.stdout
    assert "weights.json" in done.stdout and "sha256:" in done.stdout
    assert (dav.root / "models" / "cli-run" / "weights.json").is_file()
    assert tr(cluster, "cli-run")["status"]["phase"] == "Succeeded"
    assert_no_secret(all_text(cluster, "cli-run") + done.stdout + done.stderr, PASSWORD)


def post(url: str, token: str, report: dict) -> int:
    req = urllib.request.Request(
        url, data=json.dumps(report).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def test_progress_reaches_the_leader_through_a_follower_and_after_a_leader_change(
    installed, dav, tmp_path
):
    """A run whose pod cannot be scheduled (it asks for more CPU than the node has) holds a Job
    and its token; reports sent to each replica and to the Service land in status."""
    cluster = installed["cluster"]
    name = "held"
    body = trainingrun(name, dav, "webdav")
    body["spec"]["resources"] = {"cpu": "64", "memory": "1Gi"}
    kubectl_apply(cluster, body, tmp_path)
    job: dict = {}

    def has_job() -> bool:
        status, found = cluster.request("GET", f"/apis/batch/v1/namespaces/{USER_NS}/jobs/{name}")
        job.update(found if status == 200 else {})
        return status == 200

    cluster.wait_for(has_job, "the held run's Job", timeout=120)
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    token, url = env["DEEPMARKET_PROGRESS_TOKEN"], env["DEEPMARKET_PROGRESS_URL"]
    # Pods are given the progress Service's name (the dev cluster's CoreDNS resolves it); this
    # host has no cluster DNS, so the test posts to its ClusterIP.
    service = "deepmarket-operator-progress"
    assert url == f"http://{service}.{NS}.svc:8081/progress/{USER_NS}/{name}", url
    svc = cluster.request("GET", f"/api/v1/namespaces/{NS}/services/{service}")
    assert svc[0] == 200, svc
    url = f"http://{svc[1]['spec']['clusterIP']}:8081/progress/{USER_NS}/{name}"

    def leader() -> str:
        status, lease = cluster.request("GET", LEASE)
        return (lease.get("spec") or {}).get("holderIdentity") or "" if status == 200 else ""

    def lands(target: str, message: str) -> float:
        sent = time.monotonic()
        code = 0
        for _ in range(30):  # 503 while no replica leads (a hand-over): retry, as the step does
            code = post(target, token, {"phase": "Training", "percent": 42, "message": message})
            if code != 503:
                break
            time.sleep(1)
        assert code == 204, (target, code)
        cluster.wait_for(
            lambda: (tr(cluster, name).get("status") or {}).get("progress", {}).get("message")
            == message,
            f"report {message!r} in status", timeout=60,
        )  # fmt: skip
        return time.monotonic() - sent

    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in operator_pods(cluster)}
    lead = leader()
    follower = next(p for p in pods if p != lead)
    path = f"/progress/{USER_NS}/{name}"
    # A follower forwards: the leader's answer comes back (403 for a wrong token, not 503).
    assert post(f"http://{pods[follower]}:8081{path}", "wrong-token", {"percent": 1}) == 403
    print(f"via follower: {lands(f'http://{pods[follower]}:8081{path}', 'via follower'):.2f}s")
    print(f"via the leader: {lands(f'http://{pods[lead]}:8081{path}', 'via leader'):.2f}s")
    print(f"via the Service: {lands(url, 'via service'):.2f}s")

    # The leader goes; the reports keep landing through the Service.
    cluster.kubectl("delete", "pod", "-n", NS, lead, "--wait=false")
    cluster.wait_for(lambda: leader() not in ("", lead), "a new leader", timeout=120)
    print(f"after the leader change: {lands(url, 'after leader change'):.2f}s")
    wait_rolled_out(cluster, images.OPERATOR_IMAGE)
    cluster.kubectl("delete", "tr", name, "-n", USER_NS, check=False)
