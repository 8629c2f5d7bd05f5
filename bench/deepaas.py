"""What does the DEEPaaS API layer cost? Predict latency and throughput through `deepaas-run`
against calling the module's predict function in this process, on the same inputs.

    .venv/bin/python bench/deepaas.py [--requests 500] [--clients 4]

Inputs: held-out digit images (32x32 PNG) from the example module, cycled. In-process calls
do what DEEPaaS does per request (write the upload to a temporary file, call predict) minus
HTTP, multipart parsing, argument validation, the hop to the worker process and response
validation. Through the server: one keep-alive connection per client, multipart uploads, JSON
answers. Prints p50/p99 latency, throughput, and the server/in-process ratios.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# This file is named deepaas.py: put the repository, not bench/, first on the path, or
# `import deepaas` would import this script.
sys.path[0] = str(Path(__file__).resolve().parents[1])
from deepmarket.modules import http as dm_http  # noqa: E402
from deepmarket.modules import serve  # noqa: E402

WARMUP = 20


def inputs(count: int) -> list[bytes]:
    from deepmarket_digits import images, samples

    return [images.digit_png(samples.held_out(d, i)) for i in range(count // 10) for d in range(10)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def in_process_caller():
    """predict as DEEPaaS calls it: the upload written to a temporary file first."""
    from deepaas.model.v2.wrapper import UploadedFile
    from deepmarket_digits import api

    api.warm()

    def call(png: bytes) -> None:
        fd, name = tempfile.mkstemp()
        with os.fdopen(fd, "wb") as handle:
            handle.write(png)
        upload = UploadedFile("data", name, "image/png", "digit.png")
        result = api.predict(data=upload, accept="application/json")
        assert "label" in result

    return call


def in_process(call, pngs: list[bytes], n: int, offset: int = 0) -> tuple[list[float], float]:
    latencies = []
    started = time.perf_counter()
    for i in range(offset, offset + n):
        t0 = time.perf_counter()
        call(pngs[i % len(pngs)])
        latencies.append(time.perf_counter() - t0)
    return latencies, time.perf_counter() - started


def through_server(
    port: int, pngs: list[bytes], n: int, clients: int, offset: int = 0
) -> tuple[list[float], float]:
    """n predictions split over `clients` keep-alive connections; (latencies, seconds)."""
    bodies = [dm_http.multipart({}, {"data": ("digit.png", png)}) for png in pngs]

    def worker(count: int, start: int) -> list[float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        out = []
        for i in range(count):
            body, kind = bodies[(start + i) % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/v2/models/digits/predict/", body, {"Content-Type": kind})
            answer = conn.getresponse()
            data = answer.read()
            out.append(time.perf_counter() - t0)
            assert answer.status == 200, data
        conn.close()
        return out

    per_client = n // clients
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        starts = [offset + k * per_client for k in range(clients)]
        results = list(pool.map(worker, [per_client] * clients, starts))
    elapsed = time.perf_counter() - started
    return [x for r in results for x in r], elapsed


def line(label: str, latencies: list[float], throughput: float) -> str:
    p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
    return (
        f"{label:<34} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   "
        f"{throughput:8.1f} predictions/s   (n={len(latencies)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (see below)")
    args = parser.parse_args()

    pngs = inputs(50)
    per_round = args.requests // args.rounds
    local, one = [], []
    local_s = one_s = 0.0
    with tempfile.TemporaryDirectory() as weights:
        os.environ["DIGITS_MODEL_DIR"] = weights  # same weights for both (seeded pre-training)
        call = in_process_caller()
        port = serve.free_port()
        with Path(os.devnull).open("wb") as quiet:
            process = serve.start_deepaas("digits", port, stdout=quiet)
            try:
                serve.wait_ready(process, f"http://127.0.0.1:{port}")
                in_process(call, pngs, WARMUP)
                through_server(port, pngs, WARMUP, 1)
                # Alternate the two ways in rounds, so load from other work on a shared machine
                # falls on both alike and the ratio stays meaningful.
                for r in range(args.rounds):
                    lat, secs = in_process(call, pngs, per_round, r * per_round)
                    local, local_s = local + lat, local_s + secs
                    lat, secs = through_server(port, pngs, per_round, 1, r * per_round)
                    one, one_s = one + lat, one_s + secs
                many, many_s = through_server(port, pngs, args.requests, args.clients)
            finally:
                serve.stop(process)

    local_tp, one_tp, many_tp = len(local) / local_s, len(one) / one_s, len(many) / many_s
    print(
        f"predict on {len(pngs)} held-out 32x32 PNG digits, {len(local)} calls each way "
        f"in {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(line("in-process api.predict", local, local_tp))
    print(line("deepaas-run, 1 client", one, one_tp))
    print(line(f"deepaas-run, {args.clients} clients", many, many_tp))
    p50 = percentile(one, 0.5) / percentile(local, 0.5)
    p99 = percentile(one, 0.99) / percentile(local, 0.99)
    print(
        f"API layer overhead (1 client / in-process): p50 x{p50:.1f}, p99 x{p99:.1f}, "
        f"throughput x{local_tp / one_tp:.1f} lower; added p50 "
        f"{(percentile(one, 0.5) - percentile(local, 0.5)) * 1e3:.2f} ms per prediction"
    )


if __name__ == "__main__":
    main()
