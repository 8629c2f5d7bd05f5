"""How fast does `deepmarket validate` check a big catalog? Prints seconds and modules/s.

Generates catalogs of 1,000 and 10,000 modules (each like a real one: README, icon, sample
file) in a temporary directory and validates each in this process, as the CLI does. The goal is
1,000 modules in <= 2 s and linear growth; the per-module ratio between the two sizes shows it.

Side by side, in the same run: AI4OS's own validator (`ai4-metadata validate`, from PyPI) on the
same number of equivalent AI4OS v2 files (each generated module exported with
`deepmarket export --format ai4os-v2`), once as its command line and once through its Python
API, next to `deepmarket validate` as a command line; the ratios are printed. It only checks
each file against a JSON Schema, while ours also checks formats, files and the whole catalog.

    .venv/bin/python bench/validate.py [SIZES...]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from catalog_factory import valid_module  # the tests' realistic module

from deepmarket.catalog import export, load_catalog, validate_catalog


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
        (d / "module.yml").write_text(valid_module(module_id))
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


def _cli(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found; pip install -e '.[test]'")
    return found


def side_by_side(n: int) -> None:
    """deepmarket validate vs ai4-metadata validate on n equivalent modules."""
    from ai4_metadata import metadata as ai4  # the test extra installs it

    with tempfile.TemporaryDirectory(prefix="deepmarket-bench-") as tmp:
        root = Path(tmp) / "catalog-root"
        generate(root, n)
        v2 = Path(tmp) / "ai4os"
        v2.mkdir()
        files = []
        for module in load_catalog(root):
            path = v2 / f"{module.id}.yml"
            path.write_text(export.ai4os_v2_yaml(module))
            files.append(path)

        start = time.perf_counter()
        ours = subprocess.run(
            [_cli("deepmarket"), "validate", "--root", str(root)], capture_output=True
        )
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = subprocess.run(
            [_cli("ai4-metadata"), "validate", "-q", *map(str, files)], capture_output=True
        )
        theirs_s = time.perf_counter() - start
        if ours.returncode or theirs.returncode:
            raise SystemExit(
                "a validator refused the generated files: "
                f"{ours.stderr[-300:]!r} {theirs.stdout[-300:]!r}"
            )

        from ai4_metadata import utils

        start = time.perf_counter()
        validate_catalog(root)
        ours_api = time.perf_counter() - start
        start = time.perf_counter()
        validator = ai4.get_validator_for_schema(ai4.get_latest_schema_file())
        for path in files:
            validator.validate(utils.load_file(path))
        api_s = time.perf_counter() - start
    print(
        f"side by side on {n} modules: command lines: deepmarket validate {ours_s:.3f} s, "
        f"ai4-metadata validate {theirs_s:.3f} s; in-process: deepmarket {ours_api:.3f} s, "
        f"ai4-metadata's Python API {api_s:.3f} s"
    )
    print(
        f"ratio ai4-metadata/deepmarket: command line {theirs_s / ours_s:.2f}x, "
        f"in-process {api_s / ours_api:.2f}x (above 1: deepmarket is faster)"
    )


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
    side_by_side(sizes[0])
    for n, seconds, cpu in results:
        if n == 1000:
            verdict = "met" if seconds <= 2 else "NOT met"
            print(f"goal 1,000 modules <= 2 s: {verdict} ({seconds:.3f} s wall, {cpu:.3f} s CPU)")


if __name__ == "__main__":
    main(sys.argv[1:])
