"""How fast is the local control plane, and how much memory does it take?

    .venv/bin/python bench/cluster.py [--pods 1000 --nodes 100]

Prints: cold and warm start of etcd + kube-apiserver (to /readyz) and of the full control
plane (+ controller-manager, scheduler, kwok, 6 nodes); the RSS of each process; and how long
1,000 pods on 100 KWOK nodes take from the first create to all Running.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
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


def pods_to_running(binaries, n_pods: int, n_nodes: int) -> float:
    nodes = [
        NodeSpec(f"node-{i:03d}", cpu="32", memory="128Gi", gpus=8, pods=110)
        for i in range(n_nodes)
    ]
    with ControlPlane(binaries=binaries, controllers=True, kwok=True) as cp:
        t0 = time.perf_counter()
        cp.add_nodes(nodes)
        print(f"  {n_nodes} nodes created and Ready in {time.perf_counter() - t0:.1f}s")

        # Pods come from ReplicaSets (10 Deployments), as in a real cluster: the
        # controller-manager creates them, the scheduler binds them, kwok runs them.
        per = n_pods // 10
        start = time.perf_counter()
        for d in range(10):
            labels = {"app": f"bench-{d}"}
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"bench-{d}"},
                "spec": {
                    "replicas": per,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": "c",
                                    "image": "registry.invalid/x:1",
                                    "resources": {"requests": {"cpu": "10m"}},
                                }
                            ]
                        },
                    },
                },
            }
            status, body = cp.request(
                "POST", "/apis/apps/v1/namespaces/default/deployments", deployment
            )
            if status != 201:
                raise RuntimeError(f"deployment {d}: {status} {body}")

        # One list per poll serves all three counts (each list is ~1,000 objects).
        want = per * 10
        created = scheduled = None
        while True:
            now = time.perf_counter() - start
            status, body = cp.request("GET", "/api/v1/namespaces/default/pods", timeout=60)
            items = body["items"] if status == 200 else []
            if created is None and len(items) >= want:
                created = now
            bound = sum(1 for p in items if p["spec"].get("nodeName"))
            if scheduled is None and bound >= want:
                scheduled = now
            if sum(1 for p in items if p["status"].get("phase") == "Running") >= want:
                break
            if now > 600:
                raise RuntimeError("pods did not all reach Running within 600 s")
            time.sleep(0.5)
        total = time.perf_counter() - start
        print(
            f"  {per * 10} pods on {n_nodes} nodes, from 10 Deployments: all created after "
            f"{created or total:.1f}s, bound after {scheduled or total:.1f}s, all Running after "
            f"{total:.1f}s ({per * 10 / total:.0f} pods/s end to end)"
        )
        print(f"  RSS (MiB) with {per * 10} pods: {rss_line(cp)}")
        return total


def apiserver_restart(binaries) -> None:
    with ControlPlane(binaries=binaries) as cp:
        t0 = time.perf_counter()
        cp.restart_apiserver()
        print(
            f"kube-apiserver kill -9 and restart on existing etcd data, to /readyz: "
            f"{time.perf_counter() - t0:.2f}s"
        )


def pods(binaries, args) -> None:
    print(f"{args.pods} pods on {args.nodes} fake nodes:")
    pods_to_running(binaries, args.pods, args.nodes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--pods-only", action="store_true", help="skip the start-time runs")
    args = parser.parse_args()
    binaries = ensure_binaries()
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs (the machine is shared: figures move with it)"
    )
    print("binaries:", ", ".join(f"{n} {binaries.versions[n]}" for n in binaries.paths))

    if args.pods_only:
        pods(binaries, args)
        return 0
    # Every start is from scratch (new certificates, new etcd data): "first" pays for reading
    # the binaries from disk, later runs find them in the page cache.
    print("etcd + kube-apiserver, fresh start to /readyz:")
    runs = []
    for _ in range(1 + args.warm_runs):
        seconds, cp = timed_start(binaries)
        cp.stop()
        runs.append(seconds)
    print(
        f"  first (cold) {runs[0]:.2f}s; later (warm) median {statistics.median(runs[1:]):.2f}s "
        f"(runs: {', '.join(f'{r:.2f}' for r in runs)})"
    )

    print("full control plane (+ controller-manager, scheduler, kwok, 4 GPU + 2 CPU nodes Ready),")
    print("fresh start:")
    runs = []
    for i in range(1 + args.warm_runs):
        seconds, cp = timed_start(binaries, controllers=True, nodes=gpu_nodes(4) + cpu_nodes(2))
        runs.append(seconds)
        if i == 0:
            print(f"  RSS (MiB) idle: {rss_line(cp)}")
        cp.stop()
    print(
        f"  first (cold) {runs[0]:.2f}s; later (warm) median {statistics.median(runs[1:]):.2f}s "
        f"(runs: {', '.join(f'{r:.2f}' for r in runs)})"
    )

    apiserver_restart(binaries)
    pods(binaries, args)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
