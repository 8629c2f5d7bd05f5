"""Benchmark: the catalog sync (CatalogSource) — git polls, a 1,000-module catalog, merges.

Prints:
1. poll cost of an unchanged repository with 10,000 commits served by `git http-backend`:
   the sync's poll (one ref listing) against a plain libgit2 fetch of the same unchanged
   branch (ref listing + negotiation), median of 20 each, and the first clone;
2. a full sync of a generated 1,000-module catalog, all `deploy: true` (read from git objects
   + validated + 1,000 DeepModules server-side applied), its write calls, and the write calls
   of unchanged resyncs (polls every 10 s; goal 0);
3. merge → DeepModule children (Deployment + Service) through a signed webhook, p50/p99 over
   20 merges, each adding one `deploy: true` module to that catalog (goal p99 <= 2 s);
4. the operator's peak RSS (VmHWM) with the 1,000 synced DeepModules on the full simulated
   cluster (controller-manager, scheduler, KWOK nodes; goal <= 200 MB).

    .venv/bin/python bench/sync.py [--modules 1000] [--merges 20] [--commits 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from gitrepos import GitHttpServer, commit_all, git, init_repo  # noqa: E402
from opproc import OperatorProcess  # noqa: E402

from deepmarket.controller.sync.git import Mirror  # noqa: E402
from deepmarket.controller.sync.webhook import signature  # noqa: E402
from deepmarket.devcluster import config as cluster_config  # noqa: E402
from deepmarket.devcluster.binaries import ensure_binaries  # noqa: E402
from deepmarket.devcluster.config import NodeSpec  # noqa: E402
from deepmarket.devcluster.controlplane import ControlPlane, free_ports  # noqa: E402

cluster_config.SERVICE_CIDR = "10.0.0.0/16"  # 1,000+ Services
NS = "bench"
SECRET = "bench-webhook-secret"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
OPERATOR_AGENTS = ("deepmarket-operator", "kopf")

MODULE = """\
id: {id}
title: Benchmark module {id}
summary: A generated module for the sync benchmark.
description: Generated.
links:
  source_code: https://github.com/example/{id}
libraries: [Scikit-learn]
tasks: [Classification]
categories: [inference]
data-type: [Image]
license: MIT
dates: {{created: 2024-01-01, updated: 2024-06-01}}
resources:
  inference: {{cpu: 0.01, memory_MB: 16}}
runtime:
  image: ghcr.io/example/{id}:1.0.0
  model: {id}
  train: false
"""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def write_catalog(work: Path, ids: list[str]) -> None:
    for mid in ids:
        d = work / "catalog" / mid
        d.mkdir(parents=True, exist_ok=True)
        (d / "module.yml").write_text(MODULE.format(id=mid))
    lines = ["modules:"] + [f"  - id: {m}\n    deploy: true" for m in ids]
    (work / "modules.yml").write_text("\n".join(lines) + "\n")


# --- 1. poll cost ------------------------------------------------------------------------------


def many_commits(work: Path, n: int) -> None:
    """n commits on main in one `git fast-import` (seconds, not minutes)."""
    stream = []
    for i in range(n):
        data = f"commit {i}\n".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(f"committer Bench <b@example.org> {1700000000 + i} +0000\n".encode())
        msg = f"change {i}".encode()
        stream.append(b"data %d\n%s\n" % (len(msg), msg))
        stream.append(b"M 644 inline HISTORY.txt\n")
        stream.append(b"data %d\n%s\n" % (len(data), data))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=work, input=b"".join(stream),
                   check=True)  # fmt: skip


def poll_cost(args, tmp: Path) -> dict:
    served = tmp / "served"
    served.mkdir()
    bare = served / "history.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(bare))
    t0 = time.monotonic()
    many_commits(bare, args.commits)
    made = time.monotonic() - t0
    server = GitHttpServer(served)
    try:
        url = server.url("history.git")
        t0 = time.monotonic()
        mirror = Mirror(tmp / "cache", "bench", url, "main")
        tip = mirror.fetch()
        clone = time.monotonic() - t0
        assert tip is not None
        polls, fetches = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            assert mirror.fetch() == tip
            polls.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            mirror.repo.remotes["origin"].fetch(["+refs/heads/main:refs/remotes/origin/main"])
            fetches.append(time.perf_counter() - t0)
        requests_per_poll = None
        before = len(server.requests)
        mirror.fetch()
        requests_per_poll = len(server.requests) - before
    finally:
        server.stop()
    return {"made": made, "clone": clone, "poll": statistics.median(polls),
            "fetch": statistics.median(fetches), "requests": requests_per_poll}  # fmt: skip


# --- 2-4. the cluster ---------------------------------------------------------------------------


class Seen(threading.Thread):
    """Watches one collection and records when each name first appeared."""

    def __init__(self, api, path: str) -> None:
        super().__init__(daemon=True)
        self.api, self.path = api, path
        self.seen: dict[str, float] = {}

    def run(self) -> None:
        while True:
            try:
                method, url, headers, _, _ = self.api.param_serialize(
                    "GET", self.path, query_params=[("watch", "1")],
                    header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                )  # fmt: skip
                resp = self.api.call_api(method, url, headers, None, _request_timeout=None)
                buf = b""
                for chunk in resp.response.stream(1 << 16):
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    now = time.monotonic()
                    for line in lines:
                        if line.strip():
                            name = json.loads(line)["object"]["metadata"].get("name")
                            self.seen.setdefault(name, now)
            except Exception:
                time.sleep(0.5)


def writes(cluster: ControlPlane, mark: int, resources: tuple[str, ...]) -> int:
    n = 0
    for ev in cluster.audit_events(mark):
        if ev.get("stage") != "ResponseComplete" or ev.get("verb") not in WRITES:
            continue
        if not ev.get("userAgent", "").startswith(OPERATOR_AGENTS):
            continue
        ref = ev.get("objectRef", {})
        if ref.get("resource") == "deepmodules" and ref.get("subresource"):
            continue  # the DeepModule controller's status writes, not the sync's
        if ref.get("resource") in resources:
            n += 1
    return n


def status_of(cluster: ControlPlane) -> dict:
    path = f"/apis/deepmarket.dev/v1alpha1/namespaces/{NS}/catalogsources/main"
    return cluster.request("GET", path)[1].get("status") or {}


def deliver(port: int, after: str) -> int:
    body = json.dumps({"ref": "refs/heads/main", "after": after, "before": "0" * 40}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/catalogsources/{NS}/main", data=body,
        headers={"Content-Type": "application/json", "X-GitHub-Event": "push",
                 "X-GitHub-Delivery": str(uuid.uuid4()),
                 "X-Hub-Signature-256": signature(SECRET.encode(), body)},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status


def cluster_run(args, tmp: Path) -> dict:
    n = args.modules
    served = tmp / "served"
    served.mkdir(exist_ok=True)
    work = init_repo(tmp / "catalog-work")
    ids = [f"m-{i:04d}" for i in range(n)]
    write_catalog(work, ids)
    commit_all(work, "catalog")
    bare = served / "catalog.git"
    git(tmp, "clone", "-q", "--bare", str(work), str(bare))
    server = GitHttpServer(served)
    per_node = 500
    nodes = [NodeSpec(f"bench-{i}", cpu="1000", memory="4Ti", pods=per_node + 10)
             for i in range(math.ceil((n + args.merges) / per_node))]  # fmt: skip
    out: dict = {}
    print(f"cluster: starting the control plane ({len(nodes)} KWOK nodes) …", flush=True)
    with ControlPlane(binaries=ensure_binaries(), controllers=True, nodes=nodes,
                      audit_log=True) as cluster:  # fmt: skip
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "controller" / "crds"))
        crds = ("crd/deepmodules.deepmarket.dev", "crd/catalogsources.deepmarket.dev")
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
        cluster.kubectl("create", "namespace", NS)
        cluster.wait_for(lambda: cluster.request(
            "GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0] == 200, "sa")  # fmt: skip
        cluster.kubectl("create", "secret", "generic", "hook", "-n", NS,
                        f"--from-literal=secret={SECRET}")  # fmt: skip
        hook_port = free_ports(1)[0]
        op = OperatorProcess(cluster, tmp / "operator.log",
                             "--webhook-listen", f"127.0.0.1:{hook_port}",
                             "--git-cache", str(tmp / "git-cache"))  # fmt: skip
        op.start()
        api = cluster.api_client()
        deploys = Seen(api, f"/apis/apps/v1/namespaces/{NS}/deployments")
        services = Seen(api, f"/api/v1/namespaces/{NS}/services")
        deploys.start()
        services.start()
        time.sleep(1)
        source = {"apiVersion": "deepmarket.dev/v1alpha1", "kind": "CatalogSource",
                  "metadata": {"name": "main", "namespace": NS},
                  "spec": {"url": server.url("catalog.git"), "interval": "10m",
                           "webhook": {"secretRef": {"name": "hook"}},
                           "prune": {"maxDeletePercent": 100}}}  # fmt: skip
        print(f"cluster: CatalogSource over {n} deploy: true modules …", flush=True)
        mark = cluster.audit_mark()
        t0 = time.monotonic()
        cluster.kubectl("apply", "-f", "-", input=json.dumps(source))

        def synced() -> bool:
            st = status_of(cluster)
            reason = next((c["reason"] for c in st.get("conditions", [])
                           if c["type"] == "Ready"), None)  # fmt: skip
            if reason not in (None, "Succeeded", "Progressing"):
                raise SystemExit(f"the sync failed: {st['conditions'][0]['message'][:500]}")
            return st.get("modules") == n

        cluster.wait_for(synced, "full sync", timeout=args.timeout)
        out["full_sync"] = time.monotonic() - t0
        cluster.wait_for(lambda: all(i in deploys.seen and i in services.seen for i in ids),
                         "all children", timeout=args.timeout)  # fmt: skip
        out["children"] = max(max(deploys.seen[i], services.seen[i]) for i in ids) - t0
        time.sleep(3)
        out["sync_writes"] = writes(cluster, mark, ("deepmodules", "catalogsources"))
        op.sample()

        print("cluster: unchanged resyncs (polls every 10 s) …", flush=True)
        cluster.kubectl("patch", "catalogsource", "main", "-n", NS, "--type=merge",
                        "-p", '{"spec": {"interval": "10s"}}')  # fmt: skip
        time.sleep(3)
        mark = cluster.audit_mark()
        polls = len(server.requests)
        cluster.wait_for(lambda: len(server.requests) >= polls + 3, "3 polls", timeout=120)
        time.sleep(1)
        out["polls"] = len(server.requests) - polls
        out["resync_writes"] = writes(cluster, mark, ("deepmodules", "catalogsources"))
        op.sample()
        cluster.kubectl("patch", "catalogsource", "main", "-n", NS, "--type=merge",
                        "-p", '{"spec": {"interval": "10m"}}')  # fmt: skip

        print(f"cluster: {args.merges} merges through the webhook …", flush=True)
        lat = []
        for k in range(args.merges):
            new = f"new-{k:03d}"
            write_catalog(work, [*ids, *(f"new-{j:03d}" for j in range(k + 1))])
            commit_all(work, f"add {new}")
            git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")
            after = git(work, "rev-parse", "HEAD")
            t0 = time.monotonic()
            assert deliver(hook_port, after) == 202
            cluster.wait_for(lambda new=new: new in deploys.seen and new in services.seen,
                             f"children of {new}", timeout=120)  # fmt: skip
            lat.append(max(deploys.seen[new], services.seen[new]) - t0)
            op.sample()
        out["merge"] = lat
        op.stop()
        out["rss_mb"] = op.peak_rss_kb / 1024
        out["log"] = op.log
    server.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--merges", type=int, default=20)
    parser.add_argument("--commits", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--skip-cluster", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        t = Path(tmp)
        (t / "poll").mkdir()
        p = poll_cost(args, t / "poll")
        print(f"\n1. poll of an unchanged repository with {args.commits} commits "
              f"(git http-backend on loopback, median of {args.repeat}):")  # fmt: skip
        print(f"   first clone into the mirror:       {p['clone']:.2f} s "
              f"(repository made in {p['made']:.1f} s)")  # fmt: skip
        print(f"   the sync's poll (ref listing):      {p['poll'] * 1000:.1f} ms, "
              f"{p['requests']} HTTP request(s)")  # fmt: skip
        print(f"   plain libgit2 fetch (baseline):     {p['fetch'] * 1000:.1f} ms "
              f"(poll/fetch = {p['poll'] / p['fetch']:.2f})")  # fmt: skip
        if args.skip_cluster:
            return 0
        (t / "cluster").mkdir()
        c = cluster_run(args, t / "cluster")
        n = args.modules
        print(f"\n2. full sync of {n} deploy: true modules (full simulated cluster):")
        print(f"   CatalogSource created → {n} DeepModules applied: {c['full_sync']:.1f} s")
        print(f"   … → every Deployment + Service exists:  {c['children']:.1f} s")
        print(f"   operator writes for the sync (DeepModules + CatalogSource): {c['sync_writes']}")
        print(f"   unchanged resyncs: {c['polls']} polls, {c['resync_writes']} writes")
        lat = c["merge"]
        print(f"\n3. merge → children through the webhook ({len(lat)} merges into the "
              f"{n}-module catalog):")  # fmt: skip
        print(f"   p50 {pct(lat, 0.5):.2f} s, p99 {pct(lat, 0.99):.2f} s, "
              f"max {max(lat):.2f} s")  # fmt: skip
        print(f"\n4. operator peak RSS (VmHWM) with {n}+ synced DeepModules: "
              f"{c['rss_mb']:.0f} MB")  # fmt: skip
        print(f"   load average now: {os.getloadavg()[0]:.1f}; operator log: {c['log']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
