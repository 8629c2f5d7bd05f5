"""How fast does `deepmarket validate` check a big catalog? Prints seconds and modules/s.

Generates catalogs of 1,000 and 10,000 modules (each like a real one: README, icon, sample
file) in a temporary directory and validates each in this process, as the CLI does. The goal is
1,000 modules in <= 2 s and linear growth; the per-module ratio between the two sizes shows it.

    .venv/bin/python bench/validate.py [SIZES...]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from catalog_factory import VALID_MODULE  # the tests' realistic module

from deepmarket.catalog import validate_catalog


def generate(root: Path, n: int) -> None:
    catalog = root / "catalog"
    lines = ["modules:"]
    for i in range(n):
        module_id = f"module-{i:05d}"
        d = catalog / module_id
        (d / "samples").mkdir(parents=True)
        (d / "README.md").write_text(f"# Module {i}\n")
        (d / "icon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        (d / "samples" / "seven.png").write_bytes(b"\x89PNG\r\n")
        (d / "module.yml").write_text(VALID_MODULE.format(id=module_id))
        lines.append(f"  - id: {module_id}\n    deploy: {'true' if i % 10 == 0 else 'false'}")
    (root / "modules.yml").write_text("\n".join(lines) + "\n")


def measure(n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of validating a generated catalog of n modules."""
    with tempfile.TemporaryDirectory(prefix="deepmarket-bench-") as tmp:
        root = Path(tmp)
        generate(root, n)
        start, cpu = time.perf_counter(), time.process_time()
        problems = validate_catalog(root)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if problems:
            raise SystemExit(f"generated catalog is invalid: {problems[0]}")
        return seconds, cpu


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1000, 10000]
    # warm the one-off costs (imports, schema compilation) so they are not billed to size 1
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), 1)
        validate_catalog(Path(tmp))
    # wall time depends on what else shares the cores; CPU time is this process's own work
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} on {os.cpu_count()} cores")
    results = []
    for n in sizes:
        seconds, cpu = measure(n)
        results.append((n, seconds, cpu))
        print(
            f"{n:>6} modules: {seconds:7.3f} s wall ({n / seconds:6.0f} modules/s), "
            f"{cpu:7.3f} s CPU ({n / cpu:6.0f} modules/s)",
            flush=True,
        )
    if len(results) > 1:
        (n0, s0, c0), (n1, s1, c1) = results[0], results[-1]
        print(
            f"per-module time ratio {n1}/{n0}: wall {(s1 / n1) / (s0 / n0):.2f}, "
            f"CPU {(c1 / n1) / (c0 / n0):.2f} (1.00 = linear)"
        )
    for n, seconds, cpu in results:
        if n == 1000:
            verdict = "met" if seconds <= 2 else "NOT met"
            print(f"goal 1,000 modules <= 2 s: {verdict} ({seconds:.3f} s wall, {cpu:.3f} s CPU)")


if __name__ == "__main__":
    main(sys.argv[1:])
