"""The operator as platform admins run it: its image (controller/Dockerfile, built by
`deepmarket dev images`) installed with `kubectl apply -k` (overlays/dev) as two
real pods on the dev cluster's real node, talking to the apiserver with their ServiceAccount.

One cluster for the whole file, in order: install and Ready, reconcile, failover, upgrade, the
RBAC-vs-audit comparison (every call the operator made, as the apiserver logged it), uninstall.
Figures (failover hand-over, rollout) are printed; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from catalog_factory import make_catalog, module_text, write_index, write_module
from gitrepos import GitHttpServer, bare_clone, commit_all, init_repo, need_git, push
from test_operator_cluster import ROOT, SA_USER, WRITE_VERBS, apply, condition, dm_of

from deepmarket.controller.sync.webhook import signature
from deepmarket.devcluster import images, nodeconfig, realnode

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

OVERLAY = ROOT / "overlays" / "dev"
NS = "deepmarket-system"
DEPLOY = f"/apis/apps/v1/namespaces/{NS}/deployments/deepmarket-operator"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/deepmarket-operator"
IMAGE = "ghcr.io/example/plants:1.2.0"  # simulated pods (KWOK nodes): the operator is real
CHILDREN = {"deployments", "services", "horizontalpodautoscalers"}
# Unique per run: containerd's root outlives the node (a cache shared by every checkout), and a
# `tag --force` over an earlier run's tag was seen to leave the kubelet with that older image.
UPGRADE_TAG = f"upgrade-test-{os.getpid()}"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
# Grants the dev cluster's scenarios cannot exercise, each with why; every other (group,
# resource, verb) the operator's roles grant must be seen in the audit log. verb None: all.
UNOBSERVABLE = {
    ("serving.knative.dev", "services", None): "Knative Serving is not installed here",
    ("apps", "deployments", "delete"): "only when a module moves to Knative (not installed)",
    ("", "services", "delete"): "only when a module moves to Knative (not installed)",
    ("deepmarket.dev", "deepmodules/finalizers", None): (
        "checked by OwnerReferencesPermissionEnforcement only (not on the dev apiserver); "
        "no API call is made with it"
    ),
    ("deepmarket.dev", "trainingruns/finalizers", None): "as deepmodules/finalizers",
    ("", "namespaces", None): "kopf reads namespaces only with --namespace (not cluster-wide)",
    ("", "events", "patch"): (
        "bumps the count of an identical Warning repeated within an hour "
        "(tests/test_operator_cluster.py covers it with the host process)"
    ),
}


def operator_pods(cluster) -> list[dict]:
    status, body = cluster.request(
        "GET",
        f"/api/v1/namespaces/{NS}/pods?labelSelector=app.kubernetes.io/name%3Ddeepmarket-operator",
    )
    assert status == 200, body
    return [p for p in body["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def holder(cluster) -> str:
    status, lease = cluster.request("GET", LEASE)
    return (lease.get("spec") or {}).get("holderIdentity") or "" if status == 200 else ""


def rolled_out(cluster, image: str) -> bool:
    status, d = cluster.request("GET", DEPLOY)
    if status != 200:
        return False
    st = d.get("status", {})
    pods = operator_pods(cluster)
    return (
        st.get("observedGeneration") == d["metadata"]["generation"]
        and st.get("updatedReplicas") == st.get("readyReplicas") == st.get("replicas") == 2
        and len(pods) == 2
        and all(ready(p) and p["spec"]["containers"][0]["image"] == image for p in pods)
    )


def wait_rolled_out(cluster, image: str, timeout: float = 420) -> None:
    try:
        cluster.wait_for(lambda: rolled_out(cluster, image), f"2 Ready pods of {image}", timeout)
    except Exception:
        out = cluster.kubectl("get", "pods", "-n", NS, "-o", "wide", check=False).stdout
        logs = cluster.kubectl(
            "logs", "-n", NS, "-l", "app.kubernetes.io/name=deepmarket-operator", "--tail=30",
            "--prefix", check=False,
        ).stdout  # fmt: skip
        pytest.fail(f"the operator never rolled out {image}:\n{out}\n{logs}")


def sa_calls(cluster, mark: int = 0) -> list[dict]:
    return [
        e
        for e in cluster.audit_events(mark)
        if e.get("user", {}).get("username") == SA_USER and e.get("stage") == "ResponseComplete"
    ]


def writes(events: list[dict], resources: set[str] | None = None) -> list[dict]:
    return [
        e
        for e in events
        if e["verb"] in WRITE_VERBS
        and (resources is None or e.get("objectRef", {}).get("resource") in resources)
    ]


def pod_of(e: dict) -> str:
    """The pod whose projected ServiceAccount token made the call (the apiserver records it)."""
    return ((e.get("user", {}).get("extra") or {}).get(POD_NAME_EXTRA) or [""])[0]


def describe(e: dict) -> str:
    ref = e.get("objectRef", {})
    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
    return f"{e['verb']} {ref.get('resource')}{sub} {ref.get('namespace')}/{ref.get('name')}"


def dm(name: str, **spec: object) -> dict:
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "DeepModule",
        "metadata": {"name": name},
        "spec": {"image": IMAGE, **spec},
    }


def wait_reconciled(cluster, ns: str, name: str, timeout: float = 240) -> dict:
    seen: dict = {}

    def done() -> bool:
        seen["dm"] = d = dm_of(cluster, ns, name) or {}
        return (
            d.get("status", {}).get("observedGeneration") == d.get("metadata", {}).get("generation")
            and condition(d, "Ready").get("status") == "True"
        )

    try:
        cluster.wait_for(done, f"DeepModule {ns}/{name} reconciled and Ready", timeout=timeout)
    except Exception:
        pytest.fail(f"{name} never reconciled: {json.dumps(seen.get('dm', {}).get('status'))}")
    return seen["dm"]


def kubectl_k(cluster, verb: str, directory: Path, *extra: str) -> subprocess.CompletedProcess:
    return cluster.kubectl(verb, *extra, "-k", str(directory), check=False)


@pytest.fixture(scope="module")
def installed(real_cluster):
    cluster = real_cluster
    mark = cluster.audit_mark()
    started = time.monotonic()
    out = kubectl_k(cluster, "apply", OVERLAY, "--server-side", "--force-conflicts")
    assert out.returncode == 0, out.stderr
    wait_rolled_out(cluster, images.OPERATOR_IMAGE)
    print(f"install: 2 operator pods Ready {time.monotonic() - started:.1f}s after apply -k")
    return {"cluster": cluster, "mark": mark}


@pytest.fixture(scope="module")
def user_ns(installed):
    return namespace(installed["cluster"], "incluster-users")


def test_install_runs_two_ready_operator_pods_on_the_real_node(installed):
    cluster = installed["cluster"]
    pods = operator_pods(cluster)
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] == nodeconfig.NODE_NAME
        assert pod["spec"]["serviceAccountName"] == "deepmarket-operator"
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
        # Both answer their probes, the follower too (alive and ready to take over).
        ip = pod["status"]["podIP"]
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(f"http://{ip}:8080{path}", timeout=30) as resp:
                assert resp.status == 200
    cluster.wait_for(
        lambda: holder(cluster) in {p["metadata"]["name"] for p in pods}, "a leader", timeout=120
    )


def test_the_webhook_receiver_answers_through_its_service(installed, user_ns):
    cluster = installed["cluster"]
    status, svc = cluster.request("GET", f"/api/v1/namespaces/{NS}/services/deepmarket-webhook")
    assert status == 200, svc
    url = (
        f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
        f"/hooks/catalogsources/{user_ns}/nothing-here"
    )
    req = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )
    # Through kube-proxy to a replica, which looks the CatalogSource up as its ServiceAccount.
    code, text = post_through_service(req)
    assert code == 404, text
    assert f"no CatalogSource {user_ns}/nothing-here" in text


def test_it_reconciles_as_its_serviceaccount_from_its_pod(installed, user_ns):
    cluster = installed["cluster"]
    mark = cluster.audit_mark()
    apply(cluster, user_ns, dm("plants", autoscaling={"minReplicas": 1, "maxReplicas": 3}))
    wait_reconciled(cluster, user_ns, "plants")
    # Weights from a TrainingRun that does not exist (yet): the operator looks it up and waits.
    apply(cluster, user_ns, dm("weighted", weights={"trainingRun": "not-yet"}))
    cluster.wait_for(
        lambda: any(
            e["verb"] == "get" and e["objectRef"].get("resource") == "trainingruns"
            for e in sa_calls(cluster, mark)
        ),
        "the operator looking up the TrainingRun",
        timeout=120,
    )
    cluster.kubectl("delete", "deepmodule", "-n", user_ns, "weighted")
    leader = next(p for p in operator_pods(cluster) if p["metadata"]["name"] == holder(cluster))
    applied = writes(sa_calls(cluster, mark), CHILDREN)
    assert {e["objectRef"]["resource"] for e in applied} == CHILDREN, [describe(e) for e in applied]
    # The leader's own token (bound to its pod), never impersonation.
    for e in applied:
        assert pod_of(e) == leader["metadata"]["name"], e["user"]
        assert "impersonatedUser" not in e
        assert e["responseStatus"]["code"] in (200, 201), describe(e)


GITOPS_NS = "incluster-gitops"
TRAINING_NS = "incluster-training"
HOOK_SECRET = "hook-secret-for-the-incluster-test"


def namespace(cluster, name: str) -> str:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    assert cluster.request("POST", "/api/v1/namespaces", body)[0] == 201
    cluster.wait_for(
        lambda: (
            cluster.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200
        ),
        f"service account default in {name}",
    )
    return name


@pytest.fixture(scope="module")
def pods_git_server(installed, tmp_path_factory):
    """Bare repositories over git's smart HTTP (read-only) where the operator's pods reach the
    host: the real node bridge's gateway (what the demo serves its checkout at)."""
    need_git()
    record = realnode.read_record()
    assert record and record.get("pod_cidr"), record
    root = tmp_path_factory.mktemp("git-for-pods")
    server = GitHttpServer(root, host=realnode.gateway(record["pod_cidr"]), read_only=True)
    yield server
    server.stop()


def deliver_through_service(cluster, ns: str, name: str, after: str) -> tuple[int, str]:
    """A signed GitHub push delivery, POSTed to the webhook Service (kube-proxy → a replica)."""
    status, svc = cluster.request("GET", f"/api/v1/namespaces/{NS}/services/deepmarket-webhook")
    assert status == 200, svc
    body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": after,
                       "repository": {"full_name": "org/catalog"}}).encode()  # fmt: skip
    req = urllib.request.Request(
        f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"
        f"/hooks/catalogsources/{ns}/{name}",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                 "X-GitHub-Delivery": str(uuid.uuid4()),
                 "X-Hub-Signature-256": signature(HOOK_SECRET.encode(), body)},
    )  # fmt: skip
    return post_through_service(req)


def post_through_service(req: urllib.request.Request, timeout: float = 60) -> tuple[int, str]:
    """(status, body) of a POST to a Service's cluster IP. kube-proxy programs a Service a
    moment after its endpoints turn ready and rejects connections until then, so a refused
    connect is retried (bounded); every HTTP answer, error or not, is returned at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except urllib.error.URLError as err:
            if not isinstance(err.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_applied(cluster, ns: str, name: str, commit: str, timeout: float = 180) -> dict:
    path = f"/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/catalogsources/{name}"
    seen: dict = {}

    def done() -> bool:
        seen.update(cluster.request("GET", path)[1])
        return (seen.get("status") or {}).get("lastAppliedRevision") == f"main@sha1:{commit}"

    try:
        cluster.wait_for(done, f"{ns}/{name} applied at {commit[:8]}", timeout=timeout)
    except Exception:
        logs = cluster.kubectl(
            "logs", "-n", NS, "-l", "app.kubernetes.io/name=deepmarket-operator", "--tail=20",
            "--prefix", check=False,
        ).stdout  # fmt: skip
        pytest.fail(f"never applied {commit[:8]}: {json.dumps(seen.get('status'))}\n{logs}")
    return seen


def test_a_catalogsource_syncs_from_git_over_http_and_its_webhook(
    installed, pods_git_server, tmp_path
):
    """GitOps in the cluster: the leader fetches a repository over HTTP from its pod, creates,
    updates and prunes DeepModules; a signed push through the webhook Service syncs at once."""
    cluster = installed["cluster"]
    ns = namespace(cluster, GITOPS_NS)
    mark = cluster.audit_mark()
    work = make_catalog(init_repo(tmp_path / "work"), ["plants", "seeds"], deploy=("plants",))
    first = commit_all(work, "first catalog")
    bare = bare_clone(work, pods_git_server.root / "catalog.git")
    cluster.kubectl("create", "secret", "generic", "hook", "-n", ns,
                    f"--from-literal=secret={HOOK_SECRET}")  # fmt: skip
    source = {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "CatalogSource",
        "metadata": {"name": "main"},
        "spec": {"url": pods_git_server.url("catalog.git"), "interval": "10m",
                 "webhook": {"secretRef": {"name": "hook"}},
                 "prune": {"policy": "Delete", "maxDeletePercent": 100}},
    }  # fmt: skip
    apply(cluster, ns, source)
    wait_applied(cluster, ns, "main", first)
    assert dm_of(cluster, ns, "plants")
    # A merge: seeds deployed too, plants' image moved (its DeepModule's digest changes).
    write_index(work, ["plants", "seeds"], deploy=("plants", "seeds"))
    write_module(work, "plants", module_text(id="plants").replace("tf:1.2.0", "tf:1.3.0"))
    commit_all(work, "deploy seeds, plants 1.3.0")
    second = push(work, bare)
    code, text = deliver_through_service(cluster, ns, "main", second)
    assert code in (200, 202), text
    wait_applied(cluster, ns, "main", second)
    assert dm_of(cluster, ns, "seeds")
    # A removal: plants is no longer deployed, so its DeepModule is pruned.
    write_index(work, ["plants", "seeds"], deploy=("seeds",))
    commit_all(work, "retire plants")
    third = push(work, bare)
    code, text = deliver_through_service(cluster, ns, "main", third)
    assert code in (200, 202), text
    wait_applied(cluster, ns, "main", third)
    cluster.wait_for(lambda: dm_of(cluster, ns, "plants") is None, "plants pruned", timeout=120)
    synced = [
        e for e in writes(sa_calls(cluster, mark), {"deepmodules", "catalogsources"})
        if e["objectRef"].get("namespace") == ns
    ]  # fmt: skip
    did = {(e["objectRef"]["resource"], e["objectRef"].get("subresource", ""), e["verb"],
            e["responseStatus"]["code"]) for e in synced}  # fmt: skip
    assert ("deepmodules", "", "patch", 201) in did, did  # created by server-side apply
    assert ("deepmodules", "", "patch", 200) in did, did  # plants' new digest
    assert ("deepmodules", "", "delete", 200) in did, did  # pruned
    assert ("catalogsources", "", "patch", 200) in did, did  # the receiver's request
    assert ("catalogsources", "status", "patch", 200) in did, did
    pods = {p["metadata"]["name"] for p in operator_pods(cluster)}
    assert {pod_of(e) for e in synced} <= pods, [describe(e) for e in synced]


def training_run(name: str, **policy: object) -> dict:
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "image": IMAGE,
            "model": "plants",
            "resources": {"gpu": 1},  # a simulated (KWOK) GPU node "runs" its pod
            "data": {
                "input": {"url": "https://cloud.example.org/dav/in", "secretRef": "webdav"},
                "output": {"url": "https://cloud.example.org/dav/out"},
            },
            "runPolicy": dict(policy),  # no OUTCOME_LABEL: KWOK completes the Job's pod
        },
    }


def test_a_trainingrun_is_run_by_the_operators_pod(installed):
    """The TrainingRun controller in the cluster: its Job created suspended, resumed (a patch),
    the run Succeeded on a simulated GPU node, the Job deleted after its TTL; a Job of the
    same name that it does not own is read and left alone."""
    cluster = installed["cluster"]
    ns = namespace(cluster, TRAINING_NS)
    mark = cluster.audit_mark()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webdav"},
              "stringData": {"RCLONE_WEBDAV_USER": "ana", "RCLONE_WEBDAV_PASS": "x"}}  # fmt: skip
    taken = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "taken"},
        "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": IMAGE}]}}},
    }  # fmt: skip
    apply(cluster, ns, secret, taken, training_run("taken"))
    apply(cluster, ns, training_run("trained", suspend=True, ttlSecondsAfterFinished=0))
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    cluster.wait_for(
        lambda: cluster.request("GET", f"{jobs}/trained")[0] == 200, "the suspended Job", 120
    )
    apply(cluster, ns, training_run("trained", suspend=False, ttlSecondsAfterFinished=0))
    runs = f"/apis/deepmarket.dev/v1alpha1/namespaces/{ns}/trainingruns"

    def phase(name: str) -> str:
        return ((cluster.request("GET", f"{runs}/{name}")[1].get("status")) or {}).get("phase", "")

    try:
        cluster.wait_for(lambda: phase("trained") == "Succeeded", "the run Succeeded", 240)
        cluster.wait_for(
            lambda: cluster.request("GET", f"{jobs}/trained")[0] == 404, "the Job's TTL", 120
        )
    except Exception:
        status = cluster.request("GET", f"{runs}/trained")[1].get("status")
        pytest.fail(f"the TrainingRun did not finish: {json.dumps(status)}")
    calls = [e for e in sa_calls(cluster, mark) if e["objectRef"].get("namespace") == ns]
    did = {(e["objectRef"].get("resource"), e["objectRef"].get("subresource", ""), e["verb"])
           for e in calls}  # fmt: skip
    for want in (("jobs", "", "create"), ("jobs", "", "patch"), ("jobs", "", "delete"),
                 ("jobs", "", "get"), ("trainingruns", "status", "patch")):  # fmt: skip
        assert want in did, (want, sorted(did))
    # The Job it does not own is untouched: its create was refused (409), then it read it.
    assert not [describe(e) for e in writes(calls) if e["objectRef"].get("name") == "taken"
                and e["objectRef"].get("resource") == "jobs"
                and e["responseStatus"]["code"] < 400]  # fmt: skip
    # It would retry that create every few seconds (409s the failover tests count): gone.
    cluster.kubectl("delete", "trainingrun", "-n", ns, "taken", "--wait=true")


def test_deleting_the_leader_hands_over_without_duplicate_writes(installed, user_ns):
    cluster = installed["cluster"]
    old = holder(cluster)
    assert old
    mark = cluster.audit_mark()
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", NS, old, "--wait=false")
    # The old leader releases the lease on SIGTERM; the waiting follower (or the Deployment's
    # replacement pod, if it is up first) takes it.
    cluster.wait_for(lambda: holder(cluster) not in {old, ""}, "another pod holds the lease", 120)
    handed = time.monotonic() - started
    new = holder(cluster)
    # The new leader acts: a change made after the hand-over is reconciled (a fixed count:
    # the HorizontalPodAutoscaler goes).
    apply(cluster, user_ns, dm("plants", replicas=2))
    wait_reconciled(cluster, user_ns, "plants")
    hpa = f"/apis/autoscaling/v2/namespaces/{user_ns}/horizontalpodautoscalers/plants"
    cluster.wait_for(lambda: cluster.request("GET", hpa)[0] == 404, "the HPA deleted", 120)
    acting = time.monotonic() - started
    cluster.wait_for(
        lambda: cluster.request("GET", f"/api/v1/namespaces/{NS}/pods/{old}")[0] == 404,
        "the old leader's pod gone",
        120,
    )
    gone = time.monotonic() - started
    print(
        f"failover: lease handed over {handed:.1f}s, first reconcile {acting:.1f}s, "
        f"old pod gone {gone:.1f}s after delete"
    )
    events = writes(sa_calls(cluster, mark))
    by_pod: dict[str, list[str]] = {}
    for e in events:
        if e["objectRef"].get("resource") != "leases":
            by_pod.setdefault(pod_of(e), []).append(e["requestReceivedTimestamp"])
    assert by_pod.get(new), f"the new leader {new} wrote nothing: {by_pod}"
    # One writer at a time: every other pod's last write precedes the new leader's first.
    for pod, stamps in by_pod.items():
        if pod != new:
            assert max(stamps) < min(by_pod[new]), by_pod
    created = [describe(e) for e in events if e["responseStatus"]["code"] == 201
               and e["objectRef"].get("resource") not in {"events", "leases"}]  # fmt: skip
    assert len(created) == len(set(created)), created
    assert not [describe(e) for e in events if e["responseStatus"]["code"] == 409]
    cluster.wait_for(lambda: rolled_out(cluster, images.OPERATOR_IMAGE), "2 Ready pods again", 300)


def received(e: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()


def lease_renewed_at(cluster) -> tuple[str, float]:
    """(holder, renewTime as epoch seconds) of the operator's Lease."""
    from datetime import datetime

    status, lease = cluster.request("GET", LEASE)
    spec = lease.get("spec") or {} if status == 200 else {}
    stamp = spec.get("renewTime")
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
    return spec.get("holderIdentity") or "", when


def test_a_hard_killed_leader_hands_over_without_duplicate_writes(installed, user_ns):
    """kill -9 of the leader's process (containerd's task kill): no release, no SIGTERM. The
    kubelet restarts the container in the same pod, whose identity (the pod name) still holds
    the lease, so it resumes at once; otherwise the follower takes it once the lease expires
    (15 s after it last saw a renewal). Either way: one writer at a time."""
    cluster = installed["cluster"]
    cluster.wait_for(lambda: rolled_out(cluster, images.OPERATOR_IMAGE), "2 Ready pods", 300)
    old = holder(cluster)
    assert old
    pod = next(p for p in operator_pods(cluster) if p["metadata"]["name"] == old)
    status = pod["status"]["containerStatuses"][0]
    container, restarts = status["containerID"].split("://", 1)[1], status["restartCount"]
    record = realnode.read_record()
    assert record, "the real node's record"
    mark = cluster.audit_mark()
    started = time.monotonic()
    out = subprocess.run(
        [*realnode.ctr_command(record), "tasks", "kill", "-s", "SIGKILL", container],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    killed_at = time.time()  # the task is dead once ctr returns; the old one renewed before
    # Renewed after the kill: only a live process can have written that.
    seen: dict = {}

    def renewed() -> bool:
        seen["holder"], when = lease_renewed_at(cluster)
        return when > killed_at and seen["holder"] != ""

    cluster.wait_for(renewed, "a live replica renewing the lease", timeout=120)
    handed = time.monotonic() - started
    new = seen["holder"]
    apply(cluster, user_ns, dm("plants", replicas=3))
    wait_reconciled(cluster, user_ns, "plants")
    acting = time.monotonic() - started
    fresh = next(p for p in operator_pods(cluster) if p["metadata"]["name"] == old)
    restarted = fresh["status"]["containerStatuses"][0]["restartCount"] > restarts
    who = "its restarted container (same pod)" if new == old else f"the follower {new}"
    print(
        f"hard kill: lease renewed by {who} {handed:.1f}s after kill -9, first reconcile "
        f"{acting:.1f}s; container restarted: {restarted}"
    )
    events = writes(sa_calls(cluster, mark))
    # Before the kill's renewal only the old process wrote; after it only the lease holder.
    late = [describe(e) for e in events if e["objectRef"].get("resource") != "leases"
            and pod_of(e) != new and received(e) > killed_at]  # fmt: skip
    assert late == [], f"a replica other than the leader {new} wrote after the kill: {late}"
    created = [describe(e) for e in events if e["responseStatus"]["code"] == 201
               and e["objectRef"].get("resource") not in {"events", "leases"}]  # fmt: skip
    assert len(created) == len(set(created)), created
    assert not [describe(e) for e in events if e["responseStatus"]["code"] == 409
                and e["objectRef"].get("resource") != "leases"]  # fmt: skip
    cluster.wait_for(lambda: rolled_out(cluster, images.OPERATOR_IMAGE), "2 Ready pods again", 300)


def _tag_upgrade(cluster) -> str:
    record = realnode.read_record()
    assert record, "the real node's record"
    new = f"{images.OPERATOR_IMAGE.rsplit(':', 1)[0]}:{UPGRADE_TAG}"
    ctr = [*realnode.ctr_command(record), "images"]
    listed = subprocess.run([*ctr, "ls", "-q"], capture_output=True, text=True, timeout=60)
    prefix = new.rsplit("-", 1)[0]
    stale = [r for r in listed.stdout.split() if r == prefix or r.startswith(prefix + "-")]
    if stale:  # earlier runs' tags: references only, the layers stay
        subprocess.run([*ctr, "rm", *stale], capture_output=True, text=True, timeout=60)
    out = subprocess.run(
        [*ctr, "tag", "--force", images.OPERATOR_IMAGE, new],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return new


def test_a_new_image_rolls_without_writing_to_children(installed, user_ns, tmp_path):
    cluster = installed["cluster"]
    wait_reconciled(cluster, user_ns, "plants")
    new = _tag_upgrade(cluster)
    overlay = tmp_path / "upgrade"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(OVERLAY, overlay)],  # kustomize: no absolute
                "images": [
                    {"name": images.OPERATOR_IMAGE.rsplit(":", 1)[0], "newTag": UPGRADE_TAG}
                ],
            }
        )
    )
    before = {p["metadata"]["name"] for p in operator_pods(cluster)}
    mark = cluster.audit_mark()
    started = time.monotonic()
    out = kubectl_k(cluster, "apply", overlay, "--server-side", "--force-conflicts")
    assert out.returncode == 0, out.stderr
    wait_rolled_out(cluster, new)
    cluster.wait_for(lambda: holder(cluster) not in before | {""}, "a new pod leads", 120)
    print(f"upgrade: rolled to {new} in {time.monotonic() - started:.1f}s")
    # The new leader has passed over every module once it reconciles a fresh one.
    apply(cluster, user_ns, dm("after-upgrade"))
    wait_reconciled(cluster, user_ns, "after-upgrade")
    touched = [
        describe(e)
        for e in writes(sa_calls(cluster, mark))
        if e["objectRef"].get("namespace") == user_ns
        and e["objectRef"].get("name") != "after-upgrade"
        and e["objectRef"].get("resource") != "events"
    ]
    assert touched == [], "the upgrade wrote to unchanged modules or their children"
    assert condition(dm_of(cluster, user_ns, "plants"), "Ready")["status"] == "True"


def _rules() -> list[tuple[str, str, str]]:
    grants = []
    for path in (ROOT / "controller" / "rbac").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in {"ClusterRole", "Role"}:
                continue
            subjects_of = doc["metadata"]["name"]
            if not subjects_of.startswith("deepmarket-operator"):
                continue  # the users' aggregated roles
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            grants.append((group, resource, verb))
    return grants


def test_rbac_grants_only_what_the_operator_uses(installed):
    cluster = installed["cluster"]
    used = set()
    denied = []
    for e in sa_calls(cluster, installed["mark"]):
        ref = e.get("objectRef") or {}
        if not ref.get("resource"):
            continue  # discovery (/apis, /version): granted to every authenticated user
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        code = e.get("responseStatus", {}).get("code")
        used.add((ref.get("apiGroup", ""), resource, e["verb"]))
        if e["verb"] == "patch" and code == 201:
            used.add((ref.get("apiGroup", ""), resource, "create"))  # server-side apply created
        if code == 403:
            denied.append(describe(e))
    assert denied == [], f"the operator was refused calls its RBAC must grant: {denied}"
    unused = sorted(
        f"{group or 'core'} {resource} {verb}"
        for group, resource, verb in _rules()
        if (group, resource, verb) not in used
        and (group, resource, verb) not in UNOBSERVABLE
        and (group, resource, None) not in UNOBSERVABLE
    )
    assert unused == [], (
        f"controller/rbac grants what the operator never used while it ran: {unused}; remove "
        "the grant, or exercise it in this file's scenarios (UNOBSERVABLE: only with a reason) "
        f"(it used: {sorted(used)})"
    )


def test_uninstall_removes_the_operator_and_keeps_the_modules(installed, user_ns):
    cluster = installed["cluster"]
    out = kubectl_k(cluster, "delete", OVERLAY, "--wait=true", "--timeout=180s")
    # The CRDs are refused (kept); everything else of the operator is gone.
    assert "kept deepmodules.deepmarket.dev" in out.stderr, out.stderr
    cluster.wait_for(lambda: not operator_pods(cluster), "the operator pods gone", timeout=180)
    assert cluster.request("GET", DEPLOY)[0] == 404
    for crd in ("deepmodules.deepmarket.dev", "trainingruns.deepmarket.dev"):
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"
        status, body = cluster.request("GET", path)
        assert status == 200 and not body["metadata"].get("deletionTimestamp"), crd
    plants = dm_of(cluster, user_ns, "plants")
    assert plants and not plants["metadata"].get("deletionTimestamp")
    children = f"/apis/apps/v1/namespaces/{user_ns}/deployments/plants"
    assert cluster.request("GET", children)[0] == 200
    # With no operator left, a user deleting a module is not blocked by any finalizer; its
    # children go with it (owner references).
    cluster.kubectl("delete", "deepmodule", "-n", user_ns, "plants", "--timeout=60s")
    cluster.wait_for(lambda: cluster.request("GET", children)[0] == 404, "children GC'd", 120)
