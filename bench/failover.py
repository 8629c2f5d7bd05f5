"""Benchmark: how long the in-cluster operator is without a leader, three ways, in one run.

On a dev cluster with its real node, the operator installed as platform admins install it
(`kubectl apply -k overlays/dev`: two replicas, leader election on a Lease), each round:

- graceful: `kubectl delete pod` of the leader (SIGTERM: it releases the Lease);
- hard kill: SIGKILL of the leader's process (containerd's task kill; no release, no SIGTERM);
  the kubelet restarts the container in the same pod, whose identity still holds the Lease;
- frozen: SIGSTOP of the leader's process (a hung leader, or a node cut off): nobody renews,
  the follower waits out the lease; then SIGCONT: the old leader must not write again (its
  renew deadline passed, so its fence stops it and it exits).

Printed per way: seconds from the fault until a live process renewed the Lease (renewTime after
the fault), who, and from the audit log: write calls by any other pod after that (must be 0)
and objects created twice (must be 0). Lease 15 s, renew deadline 10 s, retry 2 s (client-go's).

    .venv/bin/python bench/failover.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from deepmarket.devcluster import ControlPlane, ensure_binaries, images, realnode
from deepmarket.devcluster.binaries import NODE_NAMES

ROOT = Path(__file__).resolve().parents[1]
NS = "deepmarket-system"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/deepmarket-operator"
PODS = f"/api/v1/namespaces/{NS}/pods?labelSelector=app.kubernetes.io%2Fname%3Ddeepmarket-operator"
SA = "system:serviceaccount:deepmarket-system:deepmarket-operator"
WRITES = {"create", "update", "patch", "delete"}
MODULES = "/apis/deepmarket.dev/v1alpha1/namespaces/failover/deepmodules"


def stamp(text: str | None) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0


def lease(cp: ControlPlane) -> tuple[str, float]:
    status, body = cp.request("GET", LEASE)
    spec = body.get("spec") or {} if status == 200 else {}
    return spec.get("holderIdentity") or "", stamp(spec.get("renewTime"))


def pods(cp: ControlPlane) -> list[dict]:
    return [
        p for p in cp.request("GET", PODS)[1]["items"] if not p["metadata"].get("deletionTimestamp")
    ]


def ready(cp: ControlPlane) -> bool:
    live = pods(cp)
    return (
        len(live) == 2
        and all(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
            for p in live
        )
        and lease(cp)[0] in {p["metadata"]["name"] for p in live}
    )


def wait(check, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def container_pid(record: dict, pod: dict) -> tuple[str, int]:
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    out = subprocess.run([*realnode.ctr_command(record), "tasks", "ls"],
                         capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == cid:
            return cid, int(parts[1])
    raise SystemExit(f"no task for container {cid}")


def module(name: str, replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": "deepmarket.dev/v1alpha1",
            "kind": "DeepModule",
            "metadata": {"name": name, "namespace": "failover"},
            "spec": {"image": "ghcr.io/example/plants:1.2.0", "replicas": replicas},
        }
    )


def reconciled(cp: ControlPlane, name: str) -> bool:
    """The new leader has written this module's status (no simulated nodes here: never Ready)."""
    status, d = cp.request("GET", f"{MODULES}/{name}")
    st = d.get("status", {}) if status == 200 else {}
    return st.get("observedGeneration") == d.get("metadata", {}).get("generation")


def pod_of(e: dict) -> str:
    extra = e.get("user", {}).get("extra") or {}
    return (extra.get("authentication.kubernetes.io/pod-name") or [""])[0]


def one(cp: ControlPlane, record: dict, way: str, n: int) -> dict:
    wait(lambda: ready(cp), "2 Ready operator pods with a leader")
    old = lease(cp)[0]
    pod = next(p for p in pods(cp) if p["metadata"]["name"] == old)
    cid, pid = container_pid(record, pod)
    mark = cp.audit_mark()
    t0 = time.monotonic()
    if way == "graceful":
        cp.kubectl("delete", "pod", "-n", NS, old, "--wait=false")
    elif way == "hard kill":
        subprocess.run([*realnode.ctr_command(record), "tasks", "kill", "-s", "SIGKILL", cid],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
    else:
        os.kill(pid, signal.SIGSTOP)
    at = time.time()  # the old process can no longer renew (or, deleted, may until SIGTERM)
    # Keep a change waiting so the new leader's first write is measured too.
    name = f"m{n}"
    cp.kubectl("apply", "-f", "-", input=module(name, 1))
    holder: dict = {}

    def renewed() -> bool:
        holder["who"], when = lease(cp)
        return bool(holder["who"]) and when > at and (way == "hard kill" or holder["who"] != old)

    wait(renewed, f"a live replica renewing the lease after {way}", 180)
    handed = time.monotonic() - t0
    wait(lambda: reconciled(cp, name), f"{name} reconciled", 300)
    acted = time.monotonic() - t0
    if way == "frozen":
        os.kill(pid, signal.SIGCONT)  # the old leader wakes up past its renew deadline
        time.sleep(8)  # it must not write: its fence stops it, and it exits
    events = [e for e in cp.audit_events(mark) if e.get("user", {}).get("username") == SA
              and e.get("stage") == "ResponseComplete"]  # fmt: skip
    new = holder["who"]
    after = at + handed
    late = [e for e in events if e["verb"] in WRITES
            and e.get("objectRef", {}).get("resource") != "leases"
            and stamp(e["requestReceivedTimestamp"]) > after and pod_of(e) != new]  # fmt: skip
    created = [f"{e['objectRef'].get('resource')}/{e['objectRef'].get('name')}" for e in events
               if e["verb"] in WRITES and e.get("responseStatus", {}).get("code") == 201
               and e["objectRef"].get("resource") not in {"events", "leases"}]  # fmt: skip
    return {"handed": handed, "acted": acted, "who": "same pod" if new == old else "follower",
            "late": len(late), "dup": len(created) - len(set(created))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    why = realnode.missing_prerequisites()
    if why:
        raise SystemExit("; ".join(why))
    realnode.wait_until_free(say=print)
    built = images.build_all(print)
    archive = images.bundle(built, images.images_dir())
    with ControlPlane(binaries=ensure_binaries(), controllers=True, audit_log=True,
                      node_ip=realnode.host_ip()) as cp:  # fmt: skip
        node_binaries = ensure_binaries(names=NODE_NAMES)
        node = realnode.RealNode(cp, images=[archive], pause_image=images.PAUSE_IMAGE,
                                 binaries=node_binaries, wait_busy=600)  # fmt: skip
        with node:
            cp.kubectl("apply", "--server-side", "-k", str(ROOT / "overlays" / "dev"))
            cp.kubectl("create", "namespace", "failover")
            record = realnode.read_record()
            results: dict[str, list[dict]] = {}
            for n in range(args.rounds):
                for way in ("graceful", "hard kill", "frozen"):
                    r = one(cp, record, way, len(results.get(way, [])) + 10 * n + 100 * len(way))
                    results.setdefault(way, []).append(r)
                    print(f"  {way:<10} lease renewed {r['handed']:5.1f}s ({r['who']}), first "
                          f"reconcile {r['acted']:5.1f}s, late writes {r['late']}, duplicates "
                          f"{r['dup']}", flush=True)  # fmt: skip
            print(f"\nmedian seconds from the fault ({args.rounds} rounds)")
            base = statistics.median(r["handed"] for r in results["graceful"])
            for way, rs in results.items():
                handed = statistics.median(r["handed"] for r in rs)
                acted = statistics.median(r["acted"] for r in rs)
                print(f"  {way:<10} lease {handed:5.1f}s ({handed / base:4.1f}x graceful), "
                      f"first reconcile {acted:5.1f}s, late writes {sum(r['late'] for r in rs)}, "
                      f"duplicates {sum(r['dup'] for r in rs)}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
