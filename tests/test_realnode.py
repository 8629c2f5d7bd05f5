"""The dev cluster's real node: pods really run (kubelet + containerd + runc), Services work
through kube-proxy, pods reach the apiserver and resolve Service names (cluster DNS),
`kubectl logs` and `exec` work, and only workloads meant for the node land there.

One control plane with the real node for this module (`real_node` fixture); pods use the
locally built Python base image (`deepmarket dev images`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from deepmarket.devcluster import imagegc, images, nodeconfig, processes, realnode
from deepmarket.devcluster.binaries import pinned_versions
from deepmarket.devcluster.config import GPU_RESOURCE

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

NODE = nodeconfig.NODE_NAME
HTTP_SERVER = (
    "import http.server, os; os.makedirs('/tmp/www', exist_ok=True); "
    "open('/tmp/www/index.html', 'w').write('hello from ' + os.environ['HOSTNAME']); "
    "os.chdir('/tmp/www'); "
    "http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=8080, "
    "bind='0.0.0.0')"
)


def pod(name: str, command: list[str], *, real: bool = True, **spec: object) -> dict:
    body: dict = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": images.BASE_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "ports": [{"containerPort": 8080}],
                    # the namespaces enforce the restricted Pod Security Standard
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                }
            ],
            "terminationGracePeriodSeconds": 1,
            **(nodeconfig.placement() if real else {}),
            **spec,
        },
    }
    return body


def create(cluster, ns: str, obj: dict) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def get_pod(cluster, ns: str, name: str) -> dict:
    status, body = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
    assert status == 200, body
    return body


def wait_pod(cluster, ns: str, name: str, check, what: str, timeout: float = 180) -> dict:
    seen: dict = {}

    def ok() -> bool:
        seen["pod"] = get_pod(cluster, ns, name)
        return check(seen["pod"])

    try:
        cluster.wait_for(ok, f"pod {name}: {what}", timeout=timeout)
    except Exception:
        events = cluster.kubectl("get", "events", "-n", ns, check=False).stdout
        pytest.fail(
            f"pod {name} never {what}: {json.dumps(seen.get('pod', {}).get('status'))}\n{events}"
        )
    return seen["pod"]


def is_ready(p: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p.get("status", {}).get("conditions", [])
    )


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def eventually_get(cluster, url: str, what: str) -> str:
    got: dict = {}

    def answers() -> bool:
        try:
            got["text"] = http_get(url)
            return True
        except OSError:
            return False

    cluster.wait_for(answers, what, timeout=60)
    return got["text"]


# --- the node --------------------------------------------------------------------------------


def test_node_runs_the_pinned_containerd_with_its_shim(real_node, real_namespace):
    """containerd 2.x, built from tools/containerd, answers the kubelet's RuntimeConfig call
    (the cgroup driver comes from the CRI, no fallback that kubelet 1.38 removes), and the
    containers' shim is the pinned one, not a distribution's on PATH."""
    want = pinned_versions()["containerd"].removeprefix("v")
    status, node = real_node.cp.request("GET", f"/api/v1/nodes/{NODE}")
    assert status == 200
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == f"containerd://{want}"
    log = real_node.log_path("kubelet").read_text(errors="replace")
    assert "Falling back to using cgroupDriver" not in log
    assert "cgroup driver setting received from the CRI runtime" in log
    assert 'cgroupDriver="cgroupfs"' in log
    record = real_node.record
    assert record["commands"]["containerd"][0] == str(real_node.binaries["containerd"])
    assert record["ctr"] == str(real_node.binaries["ctr"])
    create(real_node.cp, real_namespace, pod("shim", ["sleep", "600"]))
    wait_pod(real_node.cp, real_namespace, "shim", lambda p: p["status"].get("phase") == "Running",
             "Running")  # fmt: skip
    shims = [
        processes.cmdline(int(p.name))
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and record["socket"] in processes.cmdline(int(p.name))
    ]
    shims = [cmd for cmd in shims if "containerd-shim" in cmd[0]]
    assert shims, "no shim runs for the node's pods"
    assert {cmd[0] for cmd in shims} == {str(real_node.binaries["containerd-shim-runc-v2"])}


def test_node_registers_with_its_own_identity_taint_and_labels(real_cluster):
    status, node = real_cluster.request("GET", f"/api/v1/nodes/{NODE}")
    assert status == 200
    assert node["metadata"]["labels"][nodeconfig.REAL_NODE_LABEL] == "true"
    assert {
        "key": nodeconfig.REAL_NODE_LABEL,
        "value": "true",
        "effect": "NoSchedule",
    } in node["spec"]["taints"]
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.37.2"
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert GPU_RESOURCE not in node["status"]["allocatable"]
    # The kubelet writes as system:node:<name>: its heartbeats are authorized by the Node
    # authorizer, not by an admin certificate.
    writes = [
        (e["verb"], e["user"]["username"])
        for e in real_cluster.audit_events()
        if e.get("objectRef", {}).get("resource") == "nodes"
        and e.get("objectRef", {}).get("name") == NODE
    ]
    assert ("create", f"system:node:{NODE}") in writes
    assert ("patch", f"system:node:{NODE}") in writes or ("update", f"system:node:{NODE}") in writes
    assert not [w for w in writes if w[1] == "deepmarket-admin"]
    # ... and the Node authorizer keeps it to its own Node object.
    as_node = ("--as", f"system:node:{NODE}", "--as-group", "system:nodes")
    other = real_cluster.kubectl("label", "node", "gpu-node-1", "x=y", *as_node, check=False)
    assert other.returncode != 0 and "only its own Node object" in other.stderr
    own = real_cluster.kubectl("annotate", "node", NODE, "x=y", *as_node, check=False)
    assert own.returncode == 0, own.stderr


# --- pods ------------------------------------------------------------------------------------


def test_pod_really_serves_through_a_service_logs_and_exec(real_cluster, real_namespace):
    ns = real_namespace
    web = pod("web", ["python3", "-c", HTTP_SERVER])
    web["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/", "port": 8080},
        "periodSeconds": 1,
    }
    create(real_cluster, ns, web)
    create(
        real_cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    p = wait_pod(real_cluster, ns, "web", is_ready, "Ready")
    assert p["spec"]["nodeName"] == NODE
    assert http_get(f"http://{p['status']['podIP']}:8080/") == "hello from web"
    _, svc = real_cluster.request("GET", f"/api/v1/namespaces/{ns}/services/web")
    via_service = eventually_get(
        real_cluster, f"http://{svc['spec']['clusterIP']}/", "the Service via kube-proxy"
    )
    assert via_service == "hello from web"
    logs = real_cluster.kubectl("logs", "-n", ns, "web").stdout
    assert "GET / HTTP/1.1" in logs
    out = real_cluster.kubectl("exec", "-n", ns, "web", "--", "python3", "-c", "print(6 * 7)")
    assert out.stdout.strip() == "42"


def test_pod_reaches_the_apiserver_through_the_kubernetes_service(real_cluster, real_namespace):
    ns = real_namespace
    script = (
        "import json, os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "host = os.environ['KUBERNETES_SERVICE_HOST']\n"
        "port = os.environ['KUBERNETES_SERVICE_PORT']\n"
        "token = open(sa + '/token').read()\n"
        "req = urllib.request.Request(f'https://{host}:{port}/version',\n"
        "    headers={'Authorization': 'Bearer ' + token})\n"
        "with urllib.request.urlopen(req, context=ctx, timeout=20) as resp:\n"
        "    print(host, json.loads(resp.read())['gitVersion'])\n"
    )
    create(
        real_cluster,
        ns,
        pod("api-client", ["python3", "-c", script], restartPolicy="Never"),
    )
    wait_pod(
        real_cluster,
        ns,
        "api-client",
        lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
        "finished",
    )
    logs = real_cluster.kubectl("logs", "-n", ns, "api-client").stdout
    assert logs.split() == ["10.0.0.1", "v1.37.2"], logs
    assert get_pod(real_cluster, ns, "api-client")["status"]["phase"] == "Succeeded"


def test_only_workloads_meant_for_the_real_node_land_there(real_cluster, real_namespace):
    ns = real_namespace
    # An ordinary pod (no toleration) and a GPU pod stay on the simulated nodes.
    create(real_cluster, ns, pod("plain", ["sleep", "3600"], real=False))
    gpu = pod("gpu", ["sleep", "3600"], real=False)
    gpu["spec"]["containers"][0]["resources"] = {"limits": {GPU_RESOURCE: "1"}}
    gpu["spec"]["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists"}]
    create(real_cluster, ns, gpu)
    for name in ("plain", "gpu"):
        p = wait_pod(real_cluster, ns, name, lambda p: p["spec"].get("nodeName"), "scheduled")
        assert p["spec"]["nodeName"] != NODE
    # A GPU pod that insists on the real node stays Pending: the node has no GPUs.
    wants = pod("gpu-on-real", ["sleep", "3600"])
    wants["spec"]["containers"][0]["resources"] = {"limits": {GPU_RESOURCE: "1"}}
    create(real_cluster, ns, wants)
    p = wait_pod(
        real_cluster,
        ns,
        "gpu-on-real",
        lambda p: any(
            c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
            for c in p.get("status", {}).get("conditions", [])
        ),
        "reported Unschedulable",
    )
    assert not p["spec"].get("nodeName")


def test_jobs_run_to_completion_or_failure_and_limits_hold(real_cluster, real_namespace):
    ns = real_namespace
    for name, code in (("ok", 0), ("bad", 3)):
        create(
            real_cluster,
            ns,
            pod(
                name,
                ["python3", "-c", f"print('done'); raise SystemExit({code})"],
                restartPolicy="Never",
            ),
        )
    ok = wait_pod(
        real_cluster, ns, "ok", lambda p: p["status"].get("phase") == "Succeeded", "Succeeded"
    )
    bad = wait_pod(
        real_cluster, ns, "bad", lambda p: p["status"].get("phase") == "Failed", "Failed"
    )
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    # A memory limit is enforced by the kernel: allocating past it is an OOM kill.
    hog = pod(
        "hog",
        ["python3", "-c", "x = bytearray(200 * 2**20); print(len(x))"],
        restartPolicy="Never",
    )
    hog["spec"]["containers"][0]["resources"] = {
        "limits": {"memory": "64Mi", "cpu": "500m"},
    }
    create(real_cluster, ns, hog)
    done = wait_pod(
        real_cluster, ns, "hog", lambda p: p["status"].get("phase") == "Failed", "OOM-killed"
    )
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"


def test_node_reports_this_machines_capacity_and_address(real_cluster, real_node):
    _, node = real_cluster.request("GET", f"/api/v1/nodes/{NODE}")
    assert int(node["status"]["capacity"]["cpu"]) == os.cpu_count()
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_node.plan.node_ip


# --- cluster DNS -----------------------------------------------------------------------------

DNS_PROBE = (
    "import json, socket, sys\n"
    "def lookup(name):\n"
    "    try:\n"
    "        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)\n"
    "        return sorted({i[4][0] for i in infos})\n"
    "    except socket.gaierror as exc:\n"
    "        return exc.errno\n"
    "print(json.dumps({name: lookup(name) for name in sys.argv[1:]}))\n"
)
EXTERNAL = "pypi.org"  # the machines this runs on reach PyPI
NONEXISTENT = "deepmarket-no-such-name.invalid"  # RFC 6761: never resolves


def host_lookup(name: str) -> list[str] | int:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
        return sorted({i[4][0] for i in infos})
    except socket.gaierror as exc:
        return exc.errno


def test_pods_resolve_service_names_through_the_cluster_dns(real_cluster, real_namespace):
    ns = real_namespace
    # A Service in another namespace, found by `name.namespace` through the search path.
    other = f"{ns}-other"[:63]
    status, body = real_cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}},
    )
    assert status == 201, body
    try:
        create(
            real_cluster,
            other,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "store"},
                "spec": {"selector": {"app": "store"}, "ports": [{"port": 80}]},
            },
        )
        _, store = real_cluster.request("GET", f"/api/v1/namespaces/{other}/services/store")
        names = [
            "kubernetes.default.svc.cluster.local",
            "kubernetes.default",
            f"store.{other}",
            f"no-such-service.{other}.svc.cluster.local",
            EXTERNAL,
            NONEXISTENT,
        ]
        create(
            real_cluster,
            ns,
            pod("resolver", ["sh", "-c", 'cat /etc/resolv.conf; python3 -c "$0" "$@"', DNS_PROBE,
                             *names], restartPolicy="Never"),
        )  # fmt: skip
        done = wait_pod(
            real_cluster,
            ns,
            "resolver",
            lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
            "finished",
        )
        logs = real_cluster.kubectl("logs", "-n", ns, "resolver").stdout
        assert done["status"]["phase"] == "Succeeded", logs
    finally:
        real_cluster.request("DELETE", f"/api/v1/namespaces/{other}")
    lines = logs.strip().splitlines()
    resolv, got = lines[:-1], json.loads(lines[-1])
    # The kubelet points the pod at the kube-dns Service, with the cluster's search path.
    assert f"nameserver {nodeconfig.DNS_SERVICE_IP}" in resolv, logs
    search = next(line.split()[1:] for line in resolv if line.startswith("search "))
    assert search[:3] == [f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert got["kubernetes.default.svc.cluster.local"] == ["10.0.0.1"], got
    assert got["kubernetes.default"] == ["10.0.0.1"], got
    assert got[f"store.{other}"] == [store["spec"]["clusterIP"]], got
    # A missing Service is a clean "no such name" from CoreDNS itself, not a timeout.
    assert got[f"no-such-service.{other}.svc.cluster.local"] == socket.EAI_NONAME, got
    # Other names are forwarded to this machine's resolver: the pod sees what the host sees
    # (an address, or the same clean failure where the host has no answer).
    host = host_lookup(EXTERNAL)
    if isinstance(host, list):
        assert isinstance(got[EXTERNAL], list) and set(got[EXTERNAL]) & set(host), (got, host)
    else:
        assert got[EXTERNAL] == host, (got, host)
    assert got[NONEXISTENT] == host_lookup(NONEXISTENT), got


def test_the_cluster_dns_runs_with_a_read_only_identity(real_cluster, real_node):
    _, svc = real_cluster.request("GET", "/api/v1/namespaces/kube-system/services/kube-dns")
    assert svc["spec"]["clusterIP"] == nodeconfig.DNS_SERVICE_IP
    assert {(p["protocol"], p["port"]) for p in svc["spec"]["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert "selector" not in svc["spec"]  # CoreDNS runs on the host, beside the kubelet
    # CoreDNS's kubeconfig names its own client certificate, never the admin's.
    kubeconfig = json.loads((real_node.plan.base / "coredns.kubeconfig").read_text())
    assert kubeconfig["users"][0]["user"]["client-certificate"].endswith("coredns.crt")
    who = ("--as", nodeconfig.DNS_USER)
    allowed = [
        ("list", "services"),
        ("watch", "services"),
        ("list", "namespaces"),
        ("list", "endpointslices.discovery.k8s.io"),
        ("watch", "endpointslices.discovery.k8s.io"),
    ]
    denied = [
        ("get", "secrets"),
        ("list", "pods"),
        ("create", "services"),
        ("delete", "endpointslices.discovery.k8s.io"),
        ("list", "configmaps"),
    ]
    for verb, resource in allowed + denied:
        out = real_cluster.kubectl("auth", "can-i", verb, resource, "-A", *who, check=False)
        expected = "yes" if (verb, resource) in allowed else "no"
        assert out.stdout.strip() == expected, (verb, resource, out.stdout, out.stderr)


# --- image garbage -------------------------------------------------------------------------


def tiny_image(tmp_path, name: str) -> tuple[str, str]:
    """A one-file image of unique content under `name`, saved as a docker-archive; returns
    (archive path, podman image ID)."""
    root = tmp_path / "".join(c if c.isalnum() else "_" for c in name)
    (root / "data").mkdir(parents=True)
    (root / "data" / "id").write_text(f"{name} {os.urandom(8).hex()}\n")
    rootfs = root.with_suffix(".rootfs.tar")
    subprocess.run(["tar", "-C", str(root), "-cf", str(rootfs), "."], check=True, timeout=60)
    image_id = subprocess.run(
        ["podman", "import", "-q", str(rootfs), name],
        check=True, capture_output=True, text=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    archive = root.with_suffix(".tar")
    subprocess.run(
        ["podman", "save", "-q", "--format", "docker-archive", "-o", str(archive), name],
        check=True, timeout=120,
    )  # fmt: skip
    return str(archive), image_id


def test_images_the_bundle_replaced_leave_the_node_and_foreign_ones_stay(real_node, tmp_path):
    record = real_node.record
    ctr = realnode.ctr_command(record)

    def listed() -> list[imagegc.ImageRecord]:
        out = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, timeout=60)
        return imagegc.parse_ctr_images(out.stdout)

    stale, foreign = "localhost/deepmarket/replaced-test:1", "example.org/someone/else-test:1"
    podman_ids = []
    try:
        for name in (stale, foreign):
            archive, image_id = tiny_image(tmp_path, name)
            podman_ids.append(image_id)
            subprocess.run([*ctr, "images", "import", archive], check=True, timeout=120)
        digests = {r.name: r.digest for r in listed() if r.name in (stale, foreign)}
        # The CRI plugin adds its `sha256:<id>` record for each image it sees.
        real_node.cp.wait_for(
            lambda: {r.digest for r in listed() if r.alias} >= set(digests.values()),
            "the CRI plugin's ID records of the new images",
            timeout=60,
        )
        current = [tag for archive in real_node.images for tag in images.archive_tags(archive)]
        said: list[str] = []
        removed = realnode.prune_images(record, current, said.append)
    finally:
        subprocess.run(["podman", "rmi", *podman_ids], capture_output=True, timeout=120)
    after = listed()
    names = {r.name for r in after}
    assert stale in removed and stale not in names
    assert foreign in names and foreign not in removed
    assert set(current) <= names  # the bundle's images stay
    # the stale image's ID record went with it; the foreign one's stays
    assert not [r for r in after if r.alias and r.digest == digests[stale]]
    assert [r for r in after if r.alias and r.digest == digests[foreign]]
    assert any("freed" in line and stale in line for line in said), said
    subprocess.run([*ctr, "images", "rm", foreign], capture_output=True, timeout=60)
