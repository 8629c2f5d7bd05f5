"""Benchmark: TrainingRuns on the simulated cluster, and the pod's steps for real.

Part 1 (simulated cluster: etcd, apiserver, controller-manager, scheduler, KWOK GPU nodes):
N TrainingRuns (default 200) created at once. Prints the time until every Job exists and until
every run is Succeeded, the operator's API write calls per run over its whole life (from the
apiserver audit log, by the operator's user agents; Events counted apart), the progress →
status latency (reports posted to the operator's progress endpoint, as a pod would, for runs
held Running; p50/p95), the status writes a burst of reports costs, and the operator's peak RSS.
Goal (issue 11): <= 6 writes per run plus bounded progress updates.

Part 2 (processes): the digits module trained on the same WebDAV data (a real wsgidav server)
through `step.py` (rclone in, `deepaas-cli train`, upload with checksums) versus
`deepaas-cli train` alone on local data, interleaved; prints medians and their ratio.

    .venv/bin/python bench/training.py [--count 200] [--held 20] [--rounds 3] [--part both]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the WebDAV test server helper

from opproc import OperatorProcess  # noqa: E402

from deepmarket.devcluster.binaries import ensure_binaries  # noqa: E402
from deepmarket.devcluster.config import OUTCOME_LABEL, gpu_nodes  # noqa: E402
from deepmarket.devcluster.controlplane import ControlPlane, free_ports  # noqa: E402

NS = "bench"
API = "/apis/deepmarket.dev/v1alpha1/namespaces/bench/trainingruns"
AGENTS = ("deepmarket-operator", "kopf")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def trainingrun(name: str, hold: bool) -> dict:
    spec: dict = {
        "image": "ghcr.io/deepmarket/digits-classifier:1.0.0",
        "args": {"data_dir": "$(DATA_DIR)"},
        "resources": {"gpu": 1, "cpu": "100m", "memory": "64Mi"},
        "data": {"input": {"url": "https://dav.example.org/remote.php/dav/files/a/d"},
                 "output": {"url": "https://dav.example.org/remote.php/dav/files/a/m"}},
    }  # fmt: skip
    if hold:
        spec["podTemplate"] = {"metadata": {"labels": {OUTCOME_LABEL: "Running"}}}
    return {"apiVersion": "deepmarket.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}  # fmt: skip


def writes_by_run(cluster: ControlPlane, mark: int) -> tuple[dict[str, int], int]:
    """Operator write calls per TrainingRun name (Jobs are named after their run), and Events."""
    per: dict[str, int] = {}
    events = 0
    for ev in cluster.audit_events(mark):
        if ev.get("stage") != "ResponseComplete" or ev.get("verb") not in WRITES:
            continue
        if not ev.get("userAgent", "").startswith(AGENTS):
            continue
        ref = ev.get("objectRef", {})
        if ref.get("resource") == "events":
            events += 1
            continue
        per[ref.get("name", "")] = per.get(ref.get("name", ""), 0) + 1
    return per, events


def listing(cluster: ControlPlane, path: str) -> list[dict]:
    status, body = cluster.request("GET", path, timeout=60)
    assert status == 200, (status, body)
    return body["items"]


def post(url: str, token: str, report: dict) -> int:
    req = urllib.request.Request(url, data=json.dumps(report).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def simulated(args: argparse.Namespace, work: Path) -> None:
    n, held = args.count, args.held
    nodes = gpu_nodes(math.ceil(n / 8) + 2, gpus=8)
    print(f"simulated: control plane with {len(nodes)} KWOK GPU nodes …", flush=True)
    with ControlPlane(binaries=ensure_binaries(), controllers=True, nodes=nodes,
                      audit_log=True) as cluster:  # fmt: skip
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "controller" / "crds"))
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/trainingruns.deepmarket.dev",
            "crd/deepmodules.deepmarket.dev",
        )
        cluster.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        )
        cluster.wait_for(
            lambda: (
                cluster.request("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0] == 200
            ),
            "default SA",
        )
        port = free_ports(1)[0]
        op = OperatorProcess(cluster, work / "operator.log",
                             "--progress-listen", f"127.0.0.1:{port}",
                             "--progress-url", f"http://127.0.0.1:{port}/progress")  # fmt: skip
        op.start()
        names = [f"tr-{i:04d}" for i in range(n)]
        hold = set(names[:held])
        mark = cluster.audit_mark()
        t0 = time.monotonic()

        def create(name: str) -> None:
            status, body = cluster.request("POST", API, trainingrun(name, name in hold),
                                           timeout=60)  # fmt: skip
            assert status == 201, (status, body)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, names))
        created = time.monotonic() - t0
        print(f"simulated: {n} TrainingRuns created in {created:.1f}s", flush=True)
        jobs_at = done_at = None
        while done_at is None and time.monotonic() - t0 < args.timeout:
            op.sample()
            if (
                jobs_at is None
                and len(listing(cluster, f"/apis/batch/v1/namespaces/{NS}/jobs")) >= n
            ):
                jobs_at = time.monotonic() - t0
            runs = listing(cluster, API)
            ended = sum(1 for r in runs if (r.get("status") or {}).get("phase") == "Succeeded")
            running = sum(1 for r in runs if r["metadata"]["name"] in hold
                          and (r.get("status") or {}).get("phase") == "Running")  # fmt: skip
            if ended >= n - held and running >= held and jobs_at is not None:
                done_at = time.monotonic() - t0
            else:
                time.sleep(1)
        print(f"simulated: Jobs after {jobs_at}s; runs Succeeded/Running after {done_at}s")
        # progress → status latency on the held runs
        jobs = {
            j["metadata"]["name"]: j
            for j in listing(cluster, f"/apis/batch/v1/namespaces/{NS}/jobs")
        }
        latencies = []
        for i, name in enumerate(sorted(hold)):
            env = {e["name"]: e.get("value") for e in
                   jobs[name]["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
            sent = time.monotonic()
            code = post(
                env["DEEPMARKET_PROGRESS_URL"],
                env["DEEPMARKET_PROGRESS_TOKEN"],
                {"phase": "Training", "percent": 10 + i, "epoch": 1, "epochs": 10},
            )
            assert code == 204, code
            while time.monotonic() - sent < 60:
                _, body = cluster.request("GET", f"{API}/{name}")
                if ((body.get("status") or {}).get("progress") or {}).get("percent") == 10 + i:
                    latencies.append(time.monotonic() - sent)
                    break
                time.sleep(0.05)
        # a burst: 50 reports in 5 s to one run
        burst_mark = cluster.audit_mark()
        name = sorted(hold)[0]
        env = {e["name"]: e.get("value") for e in
               jobs[name]["spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
        for k in range(50):
            post(
                env["DEEPMARKET_PROGRESS_URL"],
                env["DEEPMARKET_PROGRESS_TOKEN"],
                {"phase": "Training", "percent": 50 + k * 0.5},
            )
            time.sleep(0.1)
        time.sleep(6)
        burst, _ = writes_by_run(cluster, burst_mark)
        per, events = writes_by_run(cluster, mark)
        op.stop()
        finished = [c for name, c in per.items() if name not in hold]
        print()
        print(f"TrainingRuns: {n} ({n - held} run to Succeeded on KWOK, {held} held Running)")
        print(f"  all Jobs exist after:              {jobs_at:.1f} s ({n / jobs_at:.1f} runs/s)")
        print(f"  all runs Succeeded/Running after:  {done_at:.1f} s")
        print(
            f"  operator writes per finished run:  mean {statistics.mean(finished):.2f}, "
            f"max {max(finished)} (+ {events / n:.2f} Events per run)"
        )
        if latencies:
            print(
                f"  progress → status latency:         p50 {pct(latencies, 0.5):.2f} s, "
                f"p95 {pct(latencies, 0.95):.2f} s ({len(latencies)} runs)"
            )
        print(f"  50 reports in 5 s to one run cost: {sum(burst.values())} status writes")
        print(f"  operator peak RSS (VmHWM):         {op.peak_rss_kb / 1024:.0f} MB")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    took = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {(done.stdout + done.stderr)[-2000:]}")
    return took


def real_steps(args: argparse.Namespace, work: Path) -> None:
    from deepmarket_digits import samples
    from webdav_server import PASSWORD, USER, obscure, webdav

    from deepmarket.controller.training import step

    cli = str(Path(sys.executable).parent / "deepaas-cli")
    with webdav(work / "dav") as dav:
        data = dav.root / "datasets" / "digits"
        samples.write_folder(data, args.per_class)
        local = work / "local-data"
        shutil.copytree(data, local)
        base = {"PATH": os.environ["PATH"], "HOME": str(work)}
        alone, through = [], []
        for r in range(args.rounds):
            wdir = work / f"alone-{r}"
            env = {**base, "DIGITS_MODEL_DIR": str(wdir)}
            alone.append(timed([cli, "--deepaas_method_output", str(work / f"a{r}.json"),
                                "train", "--data_dir", str(local)], env))  # fmt: skip
            sdir = work / f"step-{r}"
            env = {**base, "DEEPMARKET_RUN": f"run-{r}",
                   "DEEPMARKET_INPUT_URL": dav.url("datasets/digits"),
                   "DEEPMARKET_OUTPUT_URL": dav.url("models"),
                   "DEEPMARKET_DATA_DIR": str(sdir / "data"),
                   "DEEPMARKET_MODEL_DIR": str(sdir / "weights"),
                   "DIGITS_MODEL_DIR": str(sdir / "weights"),
                   "DEEPMARKET_TRAIN_ARGS": json.dumps({"data_dir": "$(DATA_DIR)"}),
                   "DEEPMARKET_DEEPAAS_CLI": cli,
                   "DEEPMARKET_TERMINATION_LOG": str(sdir / "termination-log")}  # fmt: skip
            for side in ("IN", "OUT"):
                env.update({f"RCLONE_CONFIG_{side}_TYPE": "webdav",
                            f"RCLONE_CONFIG_{side}_USER": USER,
                            f"RCLONE_CONFIG_{side}_PASS": obscure(PASSWORD)})  # fmt: skip
            env["RCLONE_CONFIG_IN_URL"] = env["DEEPMARKET_INPUT_URL"]
            env["RCLONE_CONFIG_OUT_URL"] = env["DEEPMARKET_OUTPUT_URL"]
            sdir.mkdir()
            through.append(timed([sys.executable, "-I", "-S", step.__file__], env))
            print(
                f"  round {r + 1}: deepaas-cli train {alone[-1]:.2f} s, "
                f"through the pod steps {through[-1]:.2f} s",
                flush=True,
            )
        a, t = statistics.median(alone), statistics.median(through)
        files = sum(1 for p in data.rglob("*") if p.is_file())
        print()
        print(f"digits training on {files} images ({args.rounds} rounds, medians):")
        print(f"  deepaas-cli train alone:                 {a:.2f} s")
        print(f"  data in + deepaas-cli train + upload:    {t:.2f} s")
        print(f"  overhead of data-in/upload:              {t - a:.2f} s (ratio {t / a:.2f})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--held", type=int, default=20, help="runs held Running for progress")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-class", type=int, default=30, help="images per digit (part 2)")
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--part", choices=["both", "simulated", "steps"], default="both")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        work = Path(tmp)
        if args.part in ("both", "steps"):
            real_steps(args, work)
        if args.part in ("both", "simulated"):
            simulated(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
