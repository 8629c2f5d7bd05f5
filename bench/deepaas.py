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


def in_process(pngs: list[bytes], n: int) -> tuple[list[float], float]:
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

    for i in range(WARMUP):
        call(pngs[i % len(pngs)])
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        call(pngs[i % len(pngs)])
        latencies.append(time.perf_counter() - t0)
    return latencies, n / (time.perf_counter() - started)


def through_server(port: int, pngs: list[bytes], n: int, clients: int) -> tuple[list[float], float]:
    bodies = [dm_http.multipart({}, {"data": ("digit.png", png)}) for png in pngs]

    def worker(count: int, offset: int) -> list[float]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        out = []
        for i in range(count):
            body, kind = bodies[(offset + i) % len(bodies)]
            t0 = time.perf_counter()
            conn.request("POST", "/v2/models/digits/predict/", body, {"Content-Type": kind})
            answer = conn.getresponse()
            data = answer.read()
            out.append(time.perf_counter() - t0)
            assert answer.status == 200, data
        conn.close()
        return out

    worker(WARMUP, 0)
    per_client = n // clients
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(worker, [per_client] * clients, range(clients)))
    elapsed = time.perf_counter() - started
    latencies = [x for r in results for x in r]
    return latencies, len(latencies) / elapsed


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
    args = parser.parse_args()

    pngs = inputs(50)
    with tempfile.TemporaryDirectory() as weights:
        os.environ["DIGITS_MODEL_DIR"] = weights  # same weights for both (seeded pre-training)
        local, local_tp = in_process(pngs, args.requests)
        port = serve.free_port()
        with Path(os.devnull).open("wb") as quiet:
            process = serve.start_deepaas("digits", port, stdout=quiet)
            try:
                serve.wait_ready(process, f"http://127.0.0.1:{port}")
                one, one_tp = through_server(port, pngs, args.requests, 1)
                many, many_tp = through_server(port, pngs, args.requests, args.clients)
            finally:
                serve.stop(process)

    print(f"predict on {len(pngs)} held-out 32x32 PNG digits, {args.requests} calls each")
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
