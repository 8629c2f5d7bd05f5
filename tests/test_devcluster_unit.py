"""The control plane's pure parts: version pins, binary lookup rules, generated configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepmarket.devcluster import binaries, config
from deepmarket.devcluster.binaries import (
    BinariesUnavailable,
    find_binaries,
    module_version,
    parse_version,
    pinned_versions,
    same_minor,
)

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_pins_kubernetes_and_its_own_etcd_client_version():
    pins = pinned_versions(TOOLS)
    assert pins["kube-apiserver"] == pins["kubectl"] == "v1.37.2"
    # The etcd server is the release Kubernetes' own etcd client is pinned to.
    k8s_mod = (TOOLS / "k8s" / "go.mod").read_text()
    assert pins["etcd"] == module_version(k8s_mod, "go.etcd.io/etcd/client/v3")
    assert pins["kwok"].startswith("v0.")
    for mod in ("k8s", "etcd", "kwok"):
        assert (TOOLS / mod / "go.sum").stat().st_size > 0


def test_containerd_is_a_pinned_2x_built_without_cgo():
    """The real node's containerd, shim and ctr: one static build of the pinned release (no
    btrfs snapshotter: it needs C headers), stamped so --version tells the release."""
    pins = pinned_versions(TOOLS)
    assert pins["containerd"] == pins["containerd-shim-runc-v2"] == pins["ctr"]
    assert pins["containerd"].startswith("v2.2.")
    (group,) = [g for g in binaries.build_groups(TOOLS) if "containerd" in g.names]
    assert group.names == binaries.CONTAINERD_NAMES
    assert set(binaries.CONTAINERD_NAMES) <= set(binaries.NODE_NAMES)
    assert not set(binaries.CONTAINERD_NAMES) & set(binaries.NAMES)  # only the real node's
    assert group.cgo is False and group.tags == "no_btrfs"
    assert f"version.Version={pins['containerd'].removeprefix('v')}'" in group.ldflags
    assert binaries.version_command("containerd-shim-runc-v2") == ["-v"]
    assert (TOOLS / "containerd" / "go.sum").stat().st_size > 0


def test_every_staging_module_is_pinned_to_the_release():
    k8s_mod = (TOOLS / "k8s" / "go.mod").read_text()
    staging = {line.split()[0] for line in k8s_mod.splitlines() if "=> k8s.io/" in line}
    assert {"k8s.io/api", "k8s.io/apiserver", "k8s.io/client-go", "k8s.io/kubectl"} <= staging
    for line in k8s_mod.splitlines():
        if "=> k8s.io/" in line:
            assert line.split()[-1] == "v0.37.2", line


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("Kubernetes v1.37.2\n", "v1.37.2"),
        ("Client Version: v1.37.2\nKustomize Version: v5.8.1\n", "v1.37.2"),
        ("etcd Version: 3.7.0\nGit SHA: x\nGo Version: go1.26.8\n", "v3.7.0"),
        ("containerd github.com/containerd/containerd/v2 2.2.7 go-module\n", "v2.2.7"),
        ("containerd-shim-runc-v2:\n  Version:  2.2.7\n  Revision: go-module\n", "v2.2.7"),
        ("garbage", None),
    ],
)
def test_parse_version(output, version):
    assert parse_version(output) == version


def test_same_minor_accepts_patch_skew_only():
    assert same_minor("v1.37.0", "v1.37.2")
    assert not same_minor("v1.32.4", "v1.37.2")
    assert not same_minor(None, "v1.37.2")


def test_ldflags_stamp_the_release_version():
    flags = binaries.k8s_ldflags("v1.37.2", "2026-01-01T00:00:00Z")
    assert "-X 'k8s.io/component-base/version.gitVersion=v1.37.2'" in flags
    assert "-X 'k8s.io/component-base/version.gitMinor=37'" in flags
    assert "-X 'k8s.io/client-go/pkg/version.gitVersion=v1.37.2'" in flags


def _fake_binary(directory: Path, name: str, output: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)
    return path


def _fake_set(directory: Path, pins: dict[str, str]) -> None:
    for name, version in pins.items():
        prefix = "Client Version: " if name == "kubectl" else ""
        _fake_binary(directory, name, prefix + version)


def test_lookup_prefers_assets_then_path_with_the_right_version_then_cache(tmp_path):
    pins = pinned_versions(TOOLS)
    cache_home = tmp_path / "xdg"
    cache = cache_home / "deepmarket" / f"k8s-{pins['kube-apiserver']}"
    _fake_set(cache, pins)
    assets = tmp_path / "assets"
    _fake_binary(assets, "etcd", "etcd Version: 3.6.1")  # explicit dir: taken as is
    on_path = tmp_path / "bin"
    _fake_binary(on_path, "kube-scheduler", "Kubernetes v1.37.0")  # same minor: accepted
    _fake_binary(on_path, "kubectl", "Client Version: v1.32.4")  # the dispatcher: refused
    env = {
        "XDG_CACHE_HOME": str(cache_home),
        "KUBEBUILDER_ASSETS": str(assets),
        "PATH": str(on_path),
    }
    found, missing, notes = find_binaries(env, TOOLS)
    assert missing == []
    assert found.sources["etcd"] == "KUBEBUILDER_ASSETS"
    assert found.versions["etcd"] == "v3.6.1"
    assert found.sources["kube-scheduler"] == "PATH"
    assert found.sources["kubectl"] == "cache"
    assert found["kubectl"] == cache / "kubectl"
    assert any("v1.32.4" in note and "kubectl" in note for note in notes)


def test_missing_binaries_without_go_say_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(binaries, "_go", lambda: None)
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": str(tmp_path / "nothing")}
    with pytest.raises(BinariesUnavailable) as err:
        binaries.ensure_binaries(lambda _m: None, env, TOOLS)
    message = str(err.value)
    assert "kube-apiserver" in message and "install Go" in message
    assert "KUBEBUILDER_ASSETS" in message


def test_stale_cache_entry_is_not_used(tmp_path):
    pins = pinned_versions(TOOLS)
    cache = tmp_path / "deepmarket" / f"k8s-{pins['kube-apiserver']}"
    _fake_set(cache, pins)
    _fake_binary(cache, "kwok", "kwok version v0.1.0")
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": os.devnull}
    _, missing, notes = find_binaries(env, TOOLS)
    assert missing == ["kwok"]
    assert any("stale" in note for note in notes)


def test_gpu_node_manifest_carries_capacity_and_the_kwok_annotation():
    (node,) = config.gpu_nodes(1, gpus=8)
    manifest = config.node_manifest(node)
    assert manifest["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert manifest["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert manifest["metadata"]["annotations"][config.KWOK_ANNOTATION] == "fake"
    assert (
        "nvidia.com/gpu" not in config.node_manifest(config.cpu_nodes(1)[0])["status"]["capacity"]
    )


def test_audit_policy_logs_only_writes_at_metadata_level():
    rules = config.audit_policy()["rules"]
    assert rules[0]["level"] == "Metadata"
    assert set(rules[0]["verbs"]) >= {"create", "update", "patch", "delete"}
    assert rules[-1] == {"level": "None"}


def test_kwok_stages_cover_node_ready_pod_running_job_success_and_delete():
    names = [s["metadata"]["name"] for s in config.kwok_stages()]
    assert names == [
        "node-ready",
        "pod-running",
        "pod-job-succeeded",
        "pod-job-failed",
        "pod-delete",
    ]


_NEEDS_CLUSTER = """
def test_uses_the_cluster(cluster):
    assert cluster.kubeconfig.exists()
"""


@pytest.mark.parametrize("ci", ["", "true"])
def test_cluster_tests_skip_with_the_reason_and_fail_under_ci(pytester, monkeypatch, tmp_path, ci):
    """No binaries and no Go: a laptop skips with the reason; CI=true turns it into a failure."""
    conftest = Path(__file__).with_name("conftest.py").read_text()
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_needs_cluster=_NEEDS_CLUSTER)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # a venv's bin: no go
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    if ci:
        result.assert_outcomes(errors=1)  # the fixture's skip became an error
        result.stdout.fnmatch_lines(["*skipped under CI=true*install Go*"])
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["*Kubernetes binaries unavailable*install Go*"])


def test_down_never_signals_a_recycled_pid(tmp_path):
    """`dev down` stops a recorded PID only while it still runs the recorded binary."""
    from deepmarket.devcluster import processes
    from deepmarket.devcluster.controlplane import stop_recorded
    from deepmarket.devcluster.devenv import running

    stranger = subprocess.Popen(["sleep", "60"])
    try:
        # Between fork and exec /proc/PID/cmdline reads empty, then the parent's (Python's).
        while processes.cmdline(stranger.pid)[:1] != ["sleep"]:
            time.sleep(0.01)
        state = {
            "pids": {"etcd": stranger.pid},
            "commands": {"etcd": [str(tmp_path / "etcd"), "--name=default"]},
        }
        assert not running(state)
        assert stop_recorded(state, grace=1) == []
        assert processes.alive(stranger.pid)
        # The same PID recorded with its real command is ours: it is stopped.
        state["commands"]["etcd"] = ["sleep", "60"]
        assert running(state)
        assert stop_recorded(state, grace=1) == ["etcd"]
        assert stranger.wait(timeout=5) is not None
    finally:
        if stranger.poll() is None:
            stranger.kill()
            stranger.wait()
