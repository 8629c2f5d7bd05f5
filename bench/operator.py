"""Benchmark: 1,000 DeepModules created at once on the simulated cluster.

Prints: time until every DeepModule has its Deployment and Service, time until all are Ready,
the operator's throughput, p50/p99 per-object latency (create → children, create → Ready), API
write calls per new object (from the apiserver audit log, by the operator's user agents), write
calls during a full resync (a restarted operator re-lists everything), and the operator's peak
RSS (VmHWM). Goals (issue 6): >= 50 DeepModules/s, <= 4 writes per object, 0 per resync,
RSS <= 200 MB.

Two runs in one invocation (`--mode both`, the default): first on etcd + kube-apiserver alone
(no controller-manager, scheduler or KWOK), so only the operator's own work is timed, then on
the full simulated cluster; the ratio of the two says how much of the time is the cluster's.

    .venv/bin/python bench/operator.py [--count 1000] [--workers 16] [--mode both]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from opproc import OperatorProcess, cpu_seconds

from deepmarket.devcluster import config as cluster_config
from deepmarket.devcluster.binaries import ensure_binaries
from deepmarket.devcluster.config import NodeSpec
from deepmarket.devcluster.controlplane import ControlPlane

# 1,000 ClusterIP Services do not fit the dev cluster's /24 Service range; a /16 keeps the
# same first address (10.0.0.1, in the apiserver's certificate).
cluster_config.SERVICE_CIDR = "10.0.0.0/16"

ROOT = Path(__file__).resolve().parents[1]
NS = "bench"
IMAGE = "ghcr.io/example/bench-model:1.0.0"
OPERATOR_AGENTS = ("deepmarket-operator", "kopf")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


class Watcher(threading.Thread):
    """Streams one watch and records, per object name, the first time `test(obj)` held."""

    def __init__(self, api, path: str, test) -> None:
        super().__init__(daemon=True)
        self.api, self.path, self.test = api, path, test
        self.seen: dict[str, float] = {}

    def run(self) -> None:
        while True:  # a watch can end (timeouts, the apiserver under load): watch again
            try:
                self._stream()
            except Exception:
                time.sleep(0.5)

    def _stream(self) -> None:
        while True:
            method, url, headers, _, _ = self.api.param_serialize(
                "GET",
                self.path,
                query_params=[("watch", "1")],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            resp = self.api.call_api(method, url, headers, None, _request_timeout=None)
            buf = b""
            for chunk in resp.response.stream(1 << 16):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                now = time.monotonic()
                for line in lines:
                    if not line.strip():
                        continue
                    obj = json.loads(line)["object"]
                    name = obj.get("metadata", {}).get("name")
                    if name and name not in self.seen and self.test(obj):
                        self.seen[name] = now


def ready(obj: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in obj.get("status", {}).get("conditions", [])
    )


def cluster_cpu(cluster: ControlPlane) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in cluster.pids.items()}


def cpu_split(before: dict[str, float], after: dict[str, float]) -> str:
    """'kube-apiserver 40.1 s, etcd 9.8 s, …': each control-plane process's CPU in between."""
    used = {k: after.get(k, 0.0) - v for k, v in before.items()}
    return ", ".join(f"{k} {v:.1f} s" for k, v in sorted(used.items(), key=lambda kv: -kv[1]))


def operator_writes(cluster: ControlPlane, mark: int, skip: str = "") -> tuple[int, int]:
    """(writes excluding Events, Event writes) the operator made since `mark`."""
    other = events = 0
    for ev in cluster.audit_events(mark):
        if ev.get("stage") != "ResponseComplete" or ev.get("verb") not in WRITES:
            continue
        if not ev.get("userAgent", "").startswith(OPERATOR_AGENTS):
            continue
        ref = ev.get("objectRef", {})
        if skip and ref.get("name", "").startswith(skip):
            continue
        if ref.get("resource") == "events":
            events += 1
        else:
            other += 1
    return other, events


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def deepmodule(name: str) -> dict:
    return {
        "apiVersion": "deepmarket.dev/v1alpha1",
        "kind": "DeepModule",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"image": IMAGE, "resources": {"cpu": "10m", "memory": "16Mi"}},
    }


def create_all(cluster: ControlPlane, names: list[str]) -> tuple[dict[str, float], float]:
    created: dict[str, float] = {}

    def create(name: str) -> None:
        status, body = cluster.request(
            "POST",
            f"/apis/deepmarket.dev/v1alpha1/namespaces/{NS}/deepmodules",
            deepmodule(name),
            timeout=60,
        )
        assert status == 201, (status, body)
        created[name] = time.monotonic()

    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(create, names))
    return created, time.monotonic() - t0


def install(cluster: ControlPlane, full: bool) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "controller" / "crds"))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/deepmodules.deepmarket.dev"
    )
    cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    )
    if full:  # pods need the service-account controller's "default" account
        cluster.wait_for(
            lambda: (
                cluster.request("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0] == 200
            ),
            "default service account",
        )


def operator_only(args: argparse.Namespace, work: Path) -> dict | None:
    """etcd + kube-apiserver only: no controller-manager, scheduler or KWOK compete for the CPUs
    or the apiserver, so what remains is the operator's own work (children, first status)."""
    n = args.count
    print("operator only: starting etcd + kube-apiserver (no controllers, no KWOK) …", flush=True)
    with ControlPlane(binaries=ensure_binaries(), audit_log=True) as cluster:
        install(cluster, full=False)
        op = OperatorProcess(cluster, work / "operator-only.log", "--workers", str(args.workers))
        op.start()
        api = cluster.api_client()
        watchers = {
            "deploy": Watcher(api, f"/apis/apps/v1/namespaces/{NS}/deployments", lambda o: True),
            "svc": Watcher(api, f"/api/v1/namespaces/{NS}/services", lambda o: True),
        }
        for w in watchers.values():
            w.start()
        time.sleep(1)
        names = [f"dm-{i:04d}" for i in range(n)]
        mark = cluster.audit_mark()
        op.sample()
        cpu0, cp0 = op.cpu_s, cluster_cpu(cluster)
        print(f"operator only: creating {n} DeepModules …", flush=True)
        t0 = time.monotonic()
        created, t_created = create_all(cluster, names)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            op.sample()
            if all(x in watchers["deploy"].seen and x in watchers["svc"].seen for x in names):
                break
            time.sleep(0.2)
        else:
            print(f"operator only: timed out; log {op.log}")
            op.stop()
            return None
        op.sample()
        cpu_children, cp1 = op.cpu_s - cpu0, cluster_cpu(cluster)
        both = {x: max(watchers["deploy"].seen[x], watchers["svc"].seen[x]) for x in names}
        t_children = max(both.values()) - t0
        time.sleep(5)  # the status writes that follow the children
        op.stop()
        writes, events = operator_writes(cluster, mark)
        return {
            "created": t_created,
            "children": t_children,
            "lat": [both[x] - created[x] for x in names],
            "writes": writes,
            "events": events,
            "cpu_children": cpu_children,
            "cpu_settled": op.cpu_s - cpu0,
            "cluster_cpu": cpu_split(cp0, cp1),
            "rss_mb": op.peak_rss_kb / 1024,
        }


def full_cluster(args: argparse.Namespace, work: Path) -> dict | None:
    n = args.count
    per_node = 500
    nodes = [
        NodeSpec(f"bench-{i}", cpu="1000", memory="4Ti", pods=per_node + 10)
        for i in range(math.ceil(n / per_node))
    ]
    print(f"full cluster: starting the control plane ({len(nodes)} KWOK nodes) …", flush=True)
    with ControlPlane(
        binaries=ensure_binaries(), controllers=True, nodes=nodes, audit_log=True
    ) as cluster:
        install(cluster, full=True)
        op = OperatorProcess(cluster, work / "operator.log", "--workers", str(args.workers))
        op.start()
        api = cluster.api_client()
        watchers = {
            "ready": Watcher(
                api, f"/apis/deepmarket.dev/v1alpha1/namespaces/{NS}/deepmodules", ready
            ),
            "deploy": Watcher(api, f"/apis/apps/v1/namespaces/{NS}/deployments", lambda o: True),
            "svc": Watcher(api, f"/api/v1/namespaces/{NS}/services", lambda o: True),
        }
        for w in watchers.values():
            w.start()
        time.sleep(1)  # let the watches open before the first create
        names = [f"dm-{i:04d}" for i in range(n)]
        mark = cluster.audit_mark()
        op.sample()
        cpu0, cp0 = op.cpu_s, cluster_cpu(cluster)
        cpu_children = cp1 = None
        print(f"full cluster: creating {n} DeepModules …", flush=True)
        t0 = time.monotonic()
        created, t_created = create_all(cluster, names)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            op.sample()
            if cpu_children is None and all(
                x in watchers["deploy"].seen and x in watchers["svc"].seen for x in names
            ):
                cpu_children, cp1 = op.cpu_s - cpu0, cluster_cpu(cluster)
            done = sum(1 for x in names if x in watchers["ready"].seen)
            if done == n:
                break
            time.sleep(0.2)
        else:
            print(f"timed out: {done}/{n} Ready; log {op.log}")
            op.stop()
            return None
        time.sleep(3)  # let trailing writes (if any) land in the audit log
        op.sample()
        both = {x: max(watchers["deploy"].seen[x], watchers["svc"].seen[x]) for x in names}
        result = {
            "created": t_created,
            "children": max(both.values()) - t0,
            "ready": max(watchers["ready"].seen[x] for x in names) - t0,
            "lat": [both[x] - created[x] for x in names],
            "lat_ready": [watchers["ready"].seen[x] - created[x] for x in names],
            "cpu_children": cpu_children if cpu_children is not None else op.cpu_s - cpu0,
            "cpu_settled": op.cpu_s - cpu0,
            "cluster_cpu": cpu_split(cp0, cp1 or cluster_cpu(cluster)),
        }
        result["writes"], result["events"] = operator_writes(cluster, mark)

        print("resync: restarting the operator (it re-lists and reconciles all) …", flush=True)
        op.stop()
        mark2 = cluster.audit_mark()
        t1 = time.monotonic()
        op.start()
        sentinel = "zz-sentinel"
        cluster.request(
            "POST",
            f"/apis/deepmarket.dev/v1alpha1/namespaces/{NS}/deepmodules",
            deepmodule(sentinel),
        )
        cluster.wait_for(lambda: sentinel in watchers["ready"].seen, "sentinel Ready", 600)
        result["resync_s"] = time.monotonic() - t1
        time.sleep(3)
        op.sample()
        result["resync_writes"], result["resync_events"] = operator_writes(
            cluster, mark2, skip=sentinel
        )
        op.stop()
        result["rss_mb"] = op.peak_rss_kb / 1024
        result["log"] = op.log
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--mode",
        choices=("both", "operator-only", "full"),
        default="both",
        help="operator-only: etcd + apiserver alone; full: with controllers, scheduler, KWOK",
    )
    args = parser.parse_args()
    n = args.count
    work = Path(tempfile.mkdtemp(prefix="deepmarket-bench-"))
    alone = full = None
    if args.mode in ("both", "operator-only"):
        alone = operator_only(args, work)
        if alone is None:
            return 1
    if args.mode in ("both", "full"):
        full = full_cluster(args, work)
        if full is None:
            return 1

    print()
    if alone:
        print("operator only (etcd + kube-apiserver; no controller-manager, scheduler, KWOK):")
        print(f"  DeepModules created:               {n} in {alone['created']:.1f} s")
        print(
            f"  all children (Deployment+Service): {alone['children']:.1f} s after the first create"
        )
        print(f"  throughput (children):             {n / alone['children']:.1f} DeepModules/s")
        print(
            f"  latency create→children p50 / p99: {pct(alone['lat'], 0.5):.2f} s / "
            f"{pct(alone['lat'], 0.99):.2f} s"
        )
        print(
            f"  operator writes per new object:    {alone['writes'] / n:.2f} "
            f"(+ {alone['events'] / n:.2f} Events; no pods here, so no Ready status write)"
        )
        print(
            f"  operator CPU per object:           {1000 * alone['cpu_children'] / n:.1f} ms "
            f"to children, {1000 * alone['cpu_settled'] / n:.1f} ms with status "
            f"({alone['cpu_settled']:.1f} s in all)"
        )
        print(f"  control plane CPU to children:     {alone['cluster_cpu']}")
        print(f"  operator peak RSS (VmHWM):         {alone['rss_mb']:.0f} MB")
    if full:
        print("full cluster (with controller-manager, scheduler, KWOK):")
        print(f"  DeepModules created:               {n} in {full['created']:.1f} s")
        print(
            f"  all children (Deployment+Service): {full['children']:.1f} s after the first create"
        )
        print(f"  all Ready:                         {full['ready']:.1f} s after the first create")
        print(f"  throughput (children):             {n / full['children']:.1f} DeepModules/s")
        print(f"  throughput (Ready):                {n / full['ready']:.1f} DeepModules/s")
        print(
            f"  latency create→children p50 / p99: {pct(full['lat'], 0.5):.2f} s / "
            f"{pct(full['lat'], 0.99):.2f} s"
        )
        print(
            f"  latency create→Ready    p50 / p99: {pct(full['lat_ready'], 0.5):.2f} s / "
            f"{pct(full['lat_ready'], 0.99):.2f} s"
        )
        print(
            f"  operator writes per new object:    {full['writes'] / n:.2f} "
            f"(+ {full['events'] / n:.2f} Events) — "
            f"{full['writes']} writes, {full['events']} Events"
        )
        print(
            f"  writes during a full resync:       {full['resync_writes']} "
            f"(+ {full['resync_events']} Events) over {n} DeepModules; "
            f"restart→sentinel Ready {full['resync_s']:.1f} s"
        )
        print(
            f"  operator CPU per object:           {1000 * full['cpu_children'] / n:.1f} ms "
            f"to children, {1000 * full['cpu_settled'] / n:.1f} ms to Ready "
            f"({full['cpu_settled']:.1f} s in all)"
        )
        print(f"  control plane CPU to children:     {full['cluster_cpu']}")
        print(f"  operator peak RSS (VmHWM):         {full['rss_mb']:.0f} MB")
    if alone and full:
        print(
            f"full cluster / operator only, time to all children: "
            f"{full['children'] / alone['children']:.1f}x "
            f"({n / alone['children']:.1f} vs {n / full['children']:.1f} DeepModules/s)"
        )
    print(f"(logs in {work}; {os.cpu_count()} CPUs shared with the control plane)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
