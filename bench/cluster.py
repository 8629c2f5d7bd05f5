"""How fast is the local control plane, and how much memory does it take?

    .venv/bin/python bench/cluster.py [--pods 1000 --nodes 100]

Prints: cold and warm start of etcd + kube-apiserver (to /readyz) and of the full control
plane (+ controller-manager, scheduler, kwok, 6 nodes); the RSS of each process; and how long
1,000 pods on 100 KWOK nodes take from the first create to all Running.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepmarket.devcluster import ControlPlane, ensure_binaries
from deepmarket.devcluster.config import NodeSpec, cpu_nodes, gpu_nodes
from deepmarket.devcluster.processes import rss_kib


def timed_start(binaries, **kwargs) -> tuple[float, ControlPlane]:
    cp = ControlPlane(binaries=binaries, **kwargs)
    t0 = time.perf_counter()
    cp.start()
    return time.perf_counter() - t0, cp


def rss_line(cp: ControlPlane) -> str:
    parts = [f"{name} {rss_kib(pid) / 1024:.0f}" for name, pid in cp.pids.items()]
    total = sum(rss_kib(pid) for pid in cp.pids.values()) / 1024
    return ", ".join(parts) + f"; total {total:.0f} MiB"


def pods_to_running(binaries, n_pods: int, n_nodes: int) -> None:
    nodes = [
        NodeSpec(f"node-{i:03d}", cpu="32", memory="128Gi", gpus=8, pods=110)
        for i in range(n_nodes)
    ]
    t0 = time.perf_counter()
    with ControlPlane(binaries=binaries, controllers=True, kwok=True) as cp:
        cp.add_nodes(nodes)
        print(
            f"  {n_nodes} nodes created and Ready in {time.perf_counter() - t0:.1f}s "
            "(including control plane start)"
        )

        def create(i: int) -> None:
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"p-{i:04d}"},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "registry.invalid/x:1",
                            "resources": {"requests": {"cpu": "10m"}},
                        }
                    ]
                },
            }
            status, body = cp.request("POST", "/api/v1/namespaces/default/pods", pod)
            if status != 201:
                raise RuntimeError(f"pod {i}: {status} {body}")

        start = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(n_pods)))
        created = time.perf_counter() - start

        def running() -> int:
            status, body = cp.request(
                "GET",
                "/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DRunning",
                timeout=30,
            )
            return len(body["items"]) if status == 200 else 0

        cp.wait_for(lambda: running() == n_pods, f"{n_pods} pods Running", timeout=600)
        total = time.perf_counter() - start
        print(
            f"  {n_pods} pods on {n_nodes} nodes: created in {created:.1f}s, all Running "
            f"after {total:.1f}s ({n_pods / total:.0f} pods/s end to end)"
        )
        print(f"  RSS (MiB) with {n_pods} pods: {rss_line(cp)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    binaries = ensure_binaries()
    print("binaries:", ", ".join(f"{n} {binaries.versions[n]}" for n in binaries.paths))

    print("etcd + kube-apiserver, start to /readyz:")
    runs = []
    for _ in range(1 + args.warm_runs):
        seconds, cp = timed_start(binaries)
        cp.stop()
        runs.append(seconds)
    print(
        f"  cold {runs[0]:.2f}s; warm median {statistics.median(runs[1:]):.2f}s "
        f"(runs: {', '.join(f'{r:.2f}' for r in runs)})"
    )

    print("full control plane (+ controller-manager, scheduler, kwok, 4 GPU + 2 CPU nodes Ready):")
    runs = []
    for i in range(1 + args.warm_runs):
        seconds, cp = timed_start(binaries, controllers=True, nodes=gpu_nodes(4) + cpu_nodes(2))
        runs.append(seconds)
        if i == 0:
            print(f"  RSS (MiB) idle: {rss_line(cp)}")
        cp.stop()
    print(
        f"  cold {runs[0]:.2f}s; warm median {statistics.median(runs[1:]):.2f}s "
        f"(runs: {', '.join(f'{r:.2f}' for r in runs)})"
    )

    print(f"{args.pods} pods on {args.nodes} fake nodes:")
    pods_to_running(binaries, args.pods, args.nodes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
