"""How fast and how heavy is the dev cluster's real node?

    .venv/bin/python bench/realnode.py [--cold-images] [--predictions 30]

Prints: image build warm (cache hit) and, with --cold-images, cold (an empty cache: debootstrap
and the digits module's pip install); containerd start -> node Ready (and CoreDNS synced); a
digits pod create -> Ready (deepaas-run warmed up and answering its readiness probe); the RSS
of kubelet, containerd, kube-proxy and CoreDNS; the median latency of a DNS lookup from a pod
(a Service by its full name, by its short name through the search path, and an external name
forwarded to this machine's resolver, cached); and the median prediction latency through the
pod's Service (kube-proxy) against `deepmarket module serve` on this machine, as a ratio.
Needs root and what `make test` installs (scripts/install-system-deps.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepmarket.devcluster import ControlPlane, ensure_binaries, images, nodeconfig, realnode
from deepmarket.devcluster.binaries import NODE_NAMES
from deepmarket.devcluster.processes import rss_kib
from deepmarket.modules import http
from deepmarket.modules.serve import free_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "catalog" / "digits-classifier" / "samples" / "seven.png"
DIGITS = "ghcr.io/deepmarket/digits-classifier:1.0.0"


def build(env: dict[str, str]) -> tuple[float, list[images.Built]]:
    t0 = time.perf_counter()
    built = images.build_all(lambda m: print(f"    {m}", flush=True), env)
    return time.perf_counter() - t0, built


def predict_times(url: str, n: int) -> list[float]:
    body, kind = http.multipart({}, {"data": SAMPLE})
    headers = {"Content-Type": kind, "Accept": "application/json"}
    times = []
    for _ in range(n + 2):
        t0 = time.perf_counter()
        answer = http.request(
            "POST", f"{url}/v2/models/digits/predict/", body=body, headers=headers, timeout=60
        )
        assert answer.status == 200 and answer.json()["label"] == 7, answer.text()
        times.append(time.perf_counter() - t0)
    return times[2:]  # the first calls warm up connections and caches


def wait_http(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


DNS_PROBE = """
import json, socket, statistics, sys, time
out = {}
for name in sys.argv[1:]:
    times = []
    for _ in range(52):
        t0 = time.perf_counter()
        try:
            socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
        except socket.gaierror:
            pass
        times.append(time.perf_counter() - t0)
    out[name] = statistics.median(times[2:]) * 1000
print(json.dumps(out))
"""


def dns_pod(names: list[str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dns-bench"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "probe",
                    "image": images.BASE_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", DNS_PROBE, *names],
                }
            ],
            **nodeconfig.placement(),
        },
    }


def digits_pod() -> dict:
    probe = {"httpGet": {"path": "/v2/models/", "port": 5000}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "digits", "labels": {"app": "digits"}},
        "spec": {
            "containers": [
                {
                    "name": "deepaas",
                    "image": DIGITS,
                    "imagePullPolicy": "Never",
                    "ports": [{"containerPort": 5000}],
                    "readinessProbe": probe,
                }
            ],
            **nodeconfig.placement(),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-images", action="store_true", help="also build from nothing")
    parser.add_argument("--predictions", type=int, default=30)
    args = parser.parse_args()
    why = realnode.missing_prerequisites()
    if why:
        raise SystemExit("; ".join(why))

    print("images")
    if args.cold_images:
        with tempfile.TemporaryDirectory() as cache:
            cold, _ = build({**os.environ, "XDG_CACHE_HOME": cache})
        print(f"  cold build (empty cache): {cold:.0f}s")
    warm, built = build(dict(os.environ))
    archive = images.bundle(built, images.images_dir())
    print(f"  warm build (cache hit):   {warm:.2f}s")
    sizes = ", ".join(f"{b.name} {b.archive.stat().st_size / 2**20:.0f} MiB" for b in built)
    print(f"  archives: {sizes}")

    binaries = ensure_binaries()
    node_binaries = ensure_binaries(names=NODE_NAMES)
    with ControlPlane(binaries=binaries, controllers=True, node_ip=realnode.host_ip()) as cp:
        node = realnode.RealNode(
            cp,
            images=[archive],
            pause_image=images.PAUSE_IMAGE,
            binaries=node_binaries,
            wait_busy=600,
        )
        with node:
            print("real node (seconds after containerd was started)")
            for what, seconds in node.timings.items():
                print(f"  {what:<20} {seconds:6.1f}s")
            ready = node.timings["node Ready"] - node.timings["images imported"]
            print(f"  kubelet start -> node Ready: {ready:.1f}s")

            t0 = time.perf_counter()
            cp.kubectl("apply", "-f", "-", input=json.dumps(digits_pod()))
            service = {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "digits"},
                "spec": {"selector": {"app": "digits"}, "ports": [{"port": 5000}]},
            }
            cp.kubectl("apply", "-f", "-", input=json.dumps(service))
            cp.kubectl("wait", "--for=condition=Ready", "pod/digits", "--timeout=300s")
            print(
                f"digits pod create -> Ready (deepaas-run answers): {time.perf_counter() - t0:.1f}s"
            )

            pids = node.record["pids"]
            parts = {name: rss_kib(pid) / 1024 for name, pid in pids.items()}
            print(
                "RSS: "
                + ", ".join(f"{n} {v:.0f} MiB" for n, v in parts.items())
                + f"; total {sum(parts.values()):.0f} MiB"
            )

            names = ["digits.default.svc.cluster.local.", "digits", "pypi.org"]
            cp.kubectl("apply", "-f", "-", input=json.dumps(dns_pod(names)))
            cp.wait_for(
                lambda: (
                    cp.request("GET", "/api/v1/namespaces/default/pods/dns-bench")[1]
                    .get("status", {})
                    .get("phase")
                    in ("Succeeded", "Failed")
                ),
                "the DNS probe pod",
                timeout=300,
            )
            lookups = json.loads(cp.kubectl("logs", "dns-bench").stdout.strip().splitlines()[-1])
            print(
                "DNS lookup from a pod, median of 50: "
                + ", ".join(f"{n} {ms:.2f} ms" for n, ms in lookups.items())
            )

            _, svc = cp.request("GET", "/api/v1/namespaces/default/services/digits")
            url = f"http://{svc['spec']['clusterIP']}:5000"
            wait_http(url + "/v2/models/")
            through_service = statistics.median(predict_times(url, args.predictions))

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "deepmarket", "module", "serve", "digits-classifier",
         "--root", str(ROOT), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        local = f"http://127.0.0.1:{port}"
        wait_http(local + "/v2/models/")
        on_host = statistics.median(predict_times(local, args.predictions))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"prediction latency, median of {args.predictions}: through the Service "
        f"{through_service * 1000:.1f} ms, `module serve` on the host {on_host * 1000:.1f} ms "
        f"(ratio {through_service / on_host:.2f}x)"
    )


if __name__ == "__main__":
    main()
