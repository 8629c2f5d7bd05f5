"""Control planes of their own: data survives an apiserver crash, nothing outlives a run
(exception, Ctrl-C, kill -9 of the parent), and `deepmarket dev up|down|status`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deepmarket.devcluster import ControlPlane, processes
from deepmarket.devcluster.controlplane import sweep_orphans
from deepmarket.devcluster.devenv import read_state

pytestmark = pytest.mark.cluster


def _gone(pids, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(processes.alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_apiserver_killed_and_restarted_keeps_the_data(cluster_binaries):
    with ControlPlane(binaries=cluster_binaries) as cp:
        cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "keep"},
            "data": {"answer": "42"},
        }
        assert cp.request("POST", "/api/v1/namespaces/default/configmaps", cm)[0] == 201
        old_pid = cp.pids["kube-apiserver"]
        cp.restart_apiserver()
        assert cp.pids["kube-apiserver"] != old_pid
        assert not processes.alive(old_pid)
        status, body = cp.request("GET", "/api/v1/namespaces/default/configmaps/keep")
        assert status == 200 and body["data"] == {"answer": "42"}


def test_an_exception_inside_the_context_stops_everything(cluster_binaries):
    cp = ControlPlane(binaries=cluster_binaries)
    with pytest.raises(RuntimeError, match="boom"), cp:
        pids = list(cp.pids.values())
        workdir = cp.workdir
        assert workdir.is_dir() and len(pids) == 2
        raise RuntimeError("boom")
    assert _gone(pids)
    assert not workdir.exists()


_CHILD = textwrap.dedent(
    """
    import json, signal, sys, time
    from deepmarket.devcluster import ControlPlane, ensure_binaries
    # A run started in the background (`make test &`, CI) inherits SIGINT ignored, and Python
    # then keeps it ignored: restore what a terminal's Ctrl-C does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with ControlPlane(binaries=ensure_binaries(build=False)) as cp:
        print(json.dumps({"pids": list(cp.pids.values()), "dir": str(cp.workdir)}), flush=True)
        time.sleep(600)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_or_killed_run_leaves_no_process(cluster_binaries, sig):
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        started = json.loads(child.stdout.readline())
        assert all(processes.alive(p) for p in started["pids"])
        child.send_signal(sig)
        child.wait(timeout=60)
        assert _gone(started["pids"])  # SIGKILL: the kernel's parent-death signal did it
        workdir = Path(started["dir"])
        if sig == signal.SIGKILL:
            # Nothing could remove the dir; the next control plane's start sweeps it.
            assert workdir.exists()
            sweep_orphans(workdir.parent)
        assert not workdir.exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _dev(env: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deepmarket", "dev", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dev_up_twice_status_kubectl_and_down(cluster_binaries, tmp_path):
    env = {**os.environ, "DEEPMARKET_DEV_DIR": str(tmp_path / "dev")}
    kubeconfig = tmp_path / "dev" / "kubeconfig"
    try:
        # The simulated fleet alone (the real node's lifecycle: test_realnode_lifecycle.py).
        first = _dev(env, "up", "--no-real-node")
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == f"export KUBECONFIG={kubeconfig}"
        state = read_state(env)
        assert state is not None
        pids = list(state["pids"].values())
        assert len(pids) == 5
        # The CLI process has exited; the cluster still runs.
        assert all(processes.alive(p) for p in pids)

        again = _dev(env, "up")
        assert again.returncode == 0, again.stderr
        assert "already runs" in again.stderr
        assert read_state(env)["pids"] == state["pids"]

        nodes = subprocess.run(
            [str(cluster_binaries["kubectl"]), "get", "nodes", "-o", "json"],
            env={**env, "KUBECONFIG": str(kubeconfig)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        items = json.loads(nodes.stdout)["items"]
        gpus = [int(n["status"]["allocatable"].get("nvidia.com/gpu", 0)) for n in items]
        assert sorted(gpus) == [0, 0, 8, 8, 8, 8]
        assert all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
            for n in items
        )

        status = _dev(env, "status")
        assert status.returncode == 0, status.stderr
        assert "(ready, 6 nodes Ready, 32 GPUs)" in status.stdout
    finally:
        down = _dev(env, "down")
    assert down.returncode == 0, down.stderr
    assert _gone(pids)
    assert not kubeconfig.exists()
    stopped = _dev(env, "status")
    assert stopped.returncode == 3 and "not running" in stopped.stdout


def test_a_port_taken_between_pick_and_bind_is_retried(cluster_binaries, monkeypatch):
    from deepmarket.devcluster import controlplane

    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    real = controlplane.free_ports
    picks = iter([[taken, *real(5)]])  # the first pick hands etcd a port someone holds
    monkeypatch.setattr(controlplane, "free_ports", lambda n: next(picks, None) or real(n))
    messages: list[str] = []
    try:
        with ControlPlane(binaries=cluster_binaries, progress=messages.append) as cp:
            assert cp.ports is not None and cp.ports.etcd_client != taken
            assert cp.request("GET", "/readyz")[0] == 200
    finally:
        squatter.close()
    assert any("retrying on new ports" in m for m in messages)
