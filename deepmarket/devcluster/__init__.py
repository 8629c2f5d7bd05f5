"""A real local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler,
KWOK fake GPU nodes) for the tests and for `deepmarket dev`. The envtest pattern, in Python.

Only the CLI, the tests and the benchmarks import this; catalog and site never do."""

from deepmarket.devcluster.binaries import (
    Binaries,
    BinariesUnavailable,
    ensure_binaries,
    find_binaries,
)
from deepmarket.devcluster.config import NodeSpec, cpu_nodes, gpu_nodes
from deepmarket.devcluster.controlplane import ControlPlane, ControlPlaneError

__all__ = [
    "Binaries",
    "BinariesUnavailable",
    "ControlPlane",
    "ControlPlaneError",
    "NodeSpec",
    "cpu_nodes",
    "ensure_binaries",
    "find_binaries",
    "gpu_nodes",
]
