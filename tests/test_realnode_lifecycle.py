"""`deepmarket dev up` with the real node, and `deepmarket dev down` leaving the host as it
found it: no process (CoreDNS included), listening socket, mount, bridge, iptables chain,
cgroup, network namespace or sysctl change left behind; the same after the process that
started a node is killed with -9.

Each test starts (and stops) a real node of its own, so these tests cannot share the
`real_node` fixture's; the host snapshot is compared before and after."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deepmarket.devcluster import hoststate, images, nodeconfig, processes, realnode
from deepmarket.devcluster.binaries import NODE_NAMES, BinariesUnavailable, ensure_binaries

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def node_ready(cluster_binaries):
    """The prerequisites, built once (skips with the reason when this machine cannot)."""
    why = realnode.missing_prerequisites()
    if why:
        pytest.skip(f"real node unavailable: {'; '.join(why)}")
    try:
        ensure_binaries(names=NODE_NAMES)
        return images.node_archive(lambda _m: None)
    except (BinariesUnavailable, images.ImagesUnavailable) as exc:
        pytest.skip(f"real node unavailable: {exc}")


def relevant(line: str, record: dict) -> bool:
    """Host differences the node could have caused (other people's work on the machine may
    change unrelated things meanwhile)."""
    dns = record.get("dns", {})
    marks = (
        f" {dns.get('listen', 'no-dns')}",  # CoreDNS's sockets ("listeners: added udp ip:port")
        f" {dns.get('ready', 'no-dns')}",
        "KUBE-",
        "CNI-",
        nodeconfig.BRIDGE,
        "veth",
        hoststate.POD_CGROUP,
        "/run/netns",
        "netns: ",
        "sysctl ",
        "path ",
        record["base"],
    )
    return any(m in line for m in marks)


def node_processes(record: dict) -> list[str]:
    """A node's processes still running: its kubelet, containerd and kube-proxy (by recorded
    PID and binary) and the shims of its containerd (they name its socket)."""
    found = [
        f"{name} {pid}"
        for name, pid in record["pids"].items()
        if processes.alive(pid) and processes.cmdline(pid)[:1] == record["commands"][name][:1]
    ]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = processes.cmdline(int(entry.name))
            if cmd and record["socket"] in cmd:
                found.append(f"{entry.name} {' '.join(cmd)[:120]}")
    return found


def pod_processes() -> list[str]:
    return [
        pid
        for d in hoststate.cgroup_dirs()
        for pid in (Path(d) / "cgroup.procs").read_text().split()
    ]


def deepmarket(*args: str, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepmarket", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_dev_up_runs_a_real_node_and_down_leaves_the_host_as_found(node_ready, tmp_path):
    realnode.wait_until_free()
    before = hoststate.snapshot(nodeconfig.FIXED_PATHS)
    env = {**os.environ, "DEEPMARKET_DEV_DIR": str(tmp_path / "dev")}
    up = deepmarket("dev", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert "Ready" in up.stderr and "no real node" not in up.stderr, up.stderr
        record = realnode.read_record()
        assert record and record["cluster"].startswith(str(tmp_path))
        assert node_processes(record)
        status = deepmarket("dev", "status", env=env)
        assert status.returncode == 0
        for name in ("kubelet", "containerd", "kube-proxy", "coredns"):
            assert name in status.stdout
        # CoreDNS listens while the node runs (the snapshot after `down` must not show it).
        listening = hoststate.read_listeners()
        assert f"udp {record['dns']['listen']}" in listening
        assert f"tcp {record['dns']['listen']}" in listening
        # A real pod, so that down has containers, mounts, a netns and veths to undo.
        kubectl = Path(
            json.loads((tmp_path / "dev" / "state.json").read_text())["commands"]["kube-apiserver"][
                0
            ]
        ).with_name("kubectl")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": images.BASE_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                    }
                ],
                **nodeconfig.placement(),
            },
        }
        kube = [str(kubectl), f"--kubeconfig={tmp_path / 'dev' / 'kubeconfig'}"]
        subprocess.run(
            [*kube, "apply", "-f", "-"],
            input=json.dumps(pod),
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [*kube, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=180s"],
            check=True,
            capture_output=True,
            timeout=200,
        )
        assert pod_processes()
    finally:
        down = deepmarket("dev", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert "real node stopped" in down.stderr
    after = hoststate.snapshot(nodeconfig.FIXED_PATHS)
    base = record["base"]
    assert [d for d in hoststate.differences(before, after) if relevant(d, record)] == []
    assert node_processes(record) == []
    assert pod_processes() == []
    assert not Path(base).exists()
    assert realnode.read_record() is None


KILLED_OWNER = textwrap.dedent(
    """
    import json, sys, time
    from deepmarket.devcluster import ControlPlane, images, nodeconfig, realnode
    cp = ControlPlane(controllers=True, node_ip=realnode.host_ip())
    cp.start()
    archive = images.node_archive(lambda _m: None)
    node = realnode.RealNode(cp, images=[archive],
                             pause_image=images.PAUSE_IMAGE, wait_busy=900)
    node.start()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
           "spec": {"containers": [{"name": "main", "image": images.BASE_IMAGE,
                                    "imagePullPolicy": "Never", "command": ["sleep", "3600"]}],
                    **nodeconfig.placement()}}
    cp.kubectl("apply", "-f", "-", input=json.dumps(pod))
    cp.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=180s")
    print("READY", flush=True)
    time.sleep(3600)
    """
)


def test_a_node_whose_owner_was_killed_is_cleaned_up_from_its_record(node_ready, tmp_path):
    realnode.wait_until_free()
    before = hoststate.snapshot(nodeconfig.FIXED_PATHS)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_OWNER],
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "owner.log").open("w"),
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "READY", (tmp_path / "owner.log").read_text()[-3000:]
        record = realnode.read_record()
        assert record is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # The containers outlive their owner (their shims are nobody's children) ...
        assert pod_processes()
        # ... until the next start, `dev down` or `recover()` reads the record.
        assert realnode.recover()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        realnode.recover()
    after = hoststate.snapshot(nodeconfig.FIXED_PATHS)
    assert [d for d in hoststate.differences(before, after) if relevant(d, record)] == []
    assert node_processes(record) == []
    assert pod_processes() == []
    assert realnode.read_record() is None
