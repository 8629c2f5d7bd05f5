"""pytest fixtures for the local control plane (registered by tests/conftest.py).

- `cluster` (session): one ControlPlane for the whole run — etcd, kube-apiserver,
  controller-manager, scheduler, KWOK with 2 GPU nodes (8 x nvidia.com/gpu each) and 1 CPU
  node, and an audit log of write calls (`cluster.audit_mark()` / `cluster.audit_events()`).
- `namespace` (function): a fresh namespace, ready for pods, enforcing the restricted Pod
  Security Standard, deleted afterwards.

- `real_node` / `real_cluster` (module): a control plane of its own with the real node joined
  (kubelet + containerd + kube-proxy, the module images imported); `real_cluster` is its
  ControlPlane. Tests using them get the `realnode` marker too. Only one real node runs on a
  machine, so a second test run waits for the first one's node (up to 15 minutes).

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
from deepmarket.devcluster.binaries import (
    NODE_NAMES,
    Binaries,
    BinariesUnavailable,
    ensure_binaries,
)
from deepmarket.devcluster.config import cpu_nodes, gpu_nodes
from deepmarket.devcluster.controlplane import ControlPlane
from deepmarket.devcluster.realnode import RealNode

SESSION_GPU_NODES = 2
GPUS_PER_NODE = 8
REAL_FIXTURES = {"real_node", "real_cluster", "real_namespace"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: needs the local Kubernetes control plane")
    config.addinivalue_line(
        "markers", "realnode: needs the real node (kubelet, containerd, runc; root)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if {"cluster", "namespace", "cluster_binaries", *REAL_FIXTURES} & names:
            item.add_marker(pytest.mark.cluster)
        if REAL_FIXTURES & names:
            item.add_marker(pytest.mark.realnode)


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
    yield from _namespace(cluster, request)


def _namespace(cluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
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


@pytest.fixture(scope="module")
def real_node(cluster_binaries: Binaries) -> Iterator[RealNode]:
    from deepmarket.devcluster import images, realnode

    why = realnode.missing_prerequisites()
    if why:
        pytest.skip(f"real node unavailable: {'; '.join(why)}")
    try:
        node_binaries = ensure_binaries(names=NODE_NAMES)
        archive = images.node_archive(lambda _m: None)
    except (BinariesUnavailable, images.ImagesUnavailable) as exc:
        pytest.skip(f"real node unavailable: {exc}")
    _sigterm_as_interrupt()
    cp = ControlPlane(
        binaries=cluster_binaries,
        controllers=True,
        nodes=gpu_nodes(1, GPUS_PER_NODE),
        audit_log=True,
        node_ip=realnode.host_ip(),
    )
    with cp:
        node = realnode.RealNode(
            cp,
            images=[archive],
            pause_image=images.PAUSE_IMAGE,
            binaries=node_binaries,
            wait_busy=900,
        )
        with node:
            yield node


@pytest.fixture(scope="module")
def real_cluster(real_node: RealNode) -> ControlPlane:
    return real_node.cp


@pytest.fixture
def real_namespace(real_cluster: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _namespace(real_cluster, request)
