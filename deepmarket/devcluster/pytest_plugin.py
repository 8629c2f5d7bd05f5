"""pytest fixtures for the local control plane (registered by tests/conftest.py).

- `cluster` (session): one ControlPlane for the whole run — etcd, kube-apiserver,
  controller-manager, scheduler, KWOK with 2 GPU nodes (8 x nvidia.com/gpu each) and 1 CPU
  node, and an audit log of write calls (`cluster.audit_mark()` / `cluster.audit_events()`).
- `namespace` (function): a fresh namespace, ready for pods, enforcing the restricted Pod
  Security Standard, deleted afterwards.

Tests using them get the `cluster` marker automatically. Without binaries and without Go the
fixture skips with the reason (tests/conftest.py turns that into a failure under CI=true).
"""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import Iterator

import pytest

from deepmarket.controller.tenancy import RESTRICTED_LABELS
from deepmarket.devcluster.binaries import Binaries, BinariesUnavailable, ensure_binaries
from deepmarket.devcluster.config import cpu_nodes, gpu_nodes
from deepmarket.devcluster.controlplane import ControlPlane

SESSION_GPU_NODES = 2
GPUS_PER_NODE = 8


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the local Kubernetes control plane")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"cluster", "namespace", "cluster_binaries"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


def _sigterm_as_interrupt() -> None:
    # A plain SIGTERM would end Python without running fixture teardown; as KeyboardInterrupt
    # pytest tears the session down and the control plane stops.
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, handler)


@pytest.fixture(scope="session")
def cluster_binaries() -> Binaries:
    try:
        return ensure_binaries()
    except BinariesUnavailable as exc:
        pytest.skip(f"Kubernetes binaries unavailable: {exc}")


@pytest.fixture(scope="session")
def cluster(cluster_binaries: Binaries) -> Iterator[ControlPlane]:
    _sigterm_as_interrupt()
    cp = ControlPlane(
        binaries=cluster_binaries,
        controllers=True,
        nodes=gpu_nodes(SESSION_GPU_NODES, GPUS_PER_NODE) + cpu_nodes(1),
        audit_log=True,
    )
    with cp:
        yield cp


@pytest.fixture
def namespace(cluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base or 'test'}-{uuid.uuid4().hex[:6]}"
    status, body = cluster.request(
        "POST",
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(RESTRICTED_LABELS)},
        },
    )
    assert status == 201, f"creating namespace {name}: {status} {body}"
    # Pods are refused until the service-account controller made "default" here.
    cluster.wait_for(
        lambda: (
            cluster.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200
        ),
        f"service account default in {name}",
    )
    yield name
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")
