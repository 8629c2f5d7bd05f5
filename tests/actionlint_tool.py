"""actionlint for the workflow tests: on PATH at the pinned version, else cached, else built
once with `go build` from the Go module proxy through `tools/actionlint` (its go.mod pins
the version), the way `deepmarket.devcluster.binaries` finds and caches the Kubernetes
binaries. Not shipped: only the tests lint workflows."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from deepmarket.devcluster.binaries import _locked, cache_root, module_version

TOOL_DIR = Path(__file__).resolve().parents[1] / "tools" / "actionlint"
MODULE = "github.com/rhysd/actionlint"


class Unavailable(Exception):
    """No actionlint at the pinned version and no Go to build it."""


def pinned() -> str:
    return module_version((TOOL_DIR / "go.mod").read_text(), MODULE)


def reported_version(path: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.splitlines()[0].strip() if out.stdout else ""
    return first if out.returncode == 0 else None


def ensure_actionlint() -> Path:
    version = pinned()
    on_path = shutil.which("actionlint")
    if on_path and reported_version(Path(on_path)) == version:
        return Path(on_path)
    cache = cache_root() / f"actionlint-{version}"
    binary = cache / "actionlint"
    if binary.is_file() and reported_version(binary) == version:
        return binary
    go = shutil.which("go")
    if go is None:
        raise Unavailable(
            f"actionlint {version} not found and Go is missing to build it (install Go >= 1.26)"
        )
    with _locked(cache.parent / f"{cache.name}.lock"):
        if binary.is_file() and reported_version(binary) == version:
            return binary  # another test session built it while we waited
        cache.mkdir(parents=True, exist_ok=True)
        staging = cache / f".build-{os.getpid()}"
        result = subprocess.run(
            [
                go,
                "build",
                "-buildvcs=false",
                "-ldflags",
                "-s -w",
                "-o",
                str(staging),
                f"{MODULE}/cmd/actionlint",
            ],
            cwd=TOOL_DIR,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            staging.unlink(missing_ok=True)
            raise Unavailable(f"go build of actionlint {version} failed:\n{result.stderr[-2000:]}")
        got = reported_version(staging)
        if got != version:
            staging.unlink(missing_ok=True)
            raise Unavailable(f"built actionlint reports {got}, expected {version}")
        staging.replace(binary)
    return binary
