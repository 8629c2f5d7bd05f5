"""How fast does `deepmarket validate` check a big catalog? Prints seconds and modules/s.

Generates catalogs of 1,000 and 10,000 modules (each like a real one: README, icon, sample
file) in a temporary directory and validates each in this process, as the CLI does. The goal is
1,000 modules in <= 2 s and linear growth; the per-module ratio between the two sizes shows it.

    .venv/bin/python bench/validate.py [SIZES...]
"""

from __future__ import annotations

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


def measure(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="deepmarket-bench-") as tmp:
        root = Path(tmp)
        generate(root, n)
        start = time.perf_counter()
        problems = validate_catalog(root)
        seconds = time.perf_counter() - start
        if problems:
            raise SystemExit(f"generated catalog is invalid: {problems[0]}")
        return seconds


def main(argv: list[str]) -> None:
    sizes = [int(a) for a in argv] or [1000, 10000]
    # warm the one-off costs (imports, schema compilation) so they are not billed to size 1
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), 1)
        validate_catalog(Path(tmp))
    results = []
    for n in sizes:
        seconds = measure(n)
        results.append((n, seconds))
        print(f"{n:>6} modules: {seconds:7.3f} s  {n / seconds:8.0f} modules/s", flush=True)
    if len(results) > 1:
        (n0, s0), (n1, s1) = results[0], results[-1]
        print(f"per-module time ratio {n1}/{n0}: {(s1 / n1) / (s0 / n0):.2f} (1.00 = linear)")
    first = dict(results).get(1000)
    if first is not None:
        print(f"goal 1,000 modules <= 2 s: {'met' if first <= 2 else 'NOT met'} ({first:.3f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
