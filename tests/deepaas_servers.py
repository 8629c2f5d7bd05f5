"""Start and stop real `deepaas-run` processes on free loopback ports (tests marked deepaas).

Imported by the test modules that need it; every server is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from deepmarket.modules import serve

REPO = Path(__file__).resolve().parent.parent
SEVEN = REPO / "catalog" / "digits-classifier" / "samples" / "seven.png"


@dataclass(frozen=True)
class Server:
    url: str
    model: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def require_deepaas() -> None:
    """Skip (a failure under CI=true) when deepaas-run or the example module is missing."""
    beside = Path(sys.executable).parent / "deepaas-run"
    if not beside.is_file() and not shutil.which("deepaas-run"):
        pytest.skip("deepaas-run is not installed (pip install deepaas)")
    if importlib.util.find_spec("deepmarket_digits") is None:
        pytest.skip("the example module is not installed (make venv installs examples/modules/*)")


@contextlib.contextmanager
def running(model: str, log: Path, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    with running_many({model: (model, log, env)}) as servers:
        yield servers[model]


@contextlib.contextmanager
def running_many(
    specs: Mapping[str, tuple[str | None, Path, Mapping[str, str] | None]],
) -> Iterator[dict[str, Server]]:
    """Start several servers at once (key -> (model or None for all, log, env)), wait for all."""
    started: dict[str, tuple[subprocess.Popen, Server]] = {}
    try:
        for key, (model, log, env) in specs.items():
            port = serve.free_port()
            with log.open("wb") as out:
                process = serve.start_deepaas(model, port, env=env, stdout=out)
            started[key] = (process, Server(f"http://127.0.0.1:{port}", model or "", log))
        for process, server in started.values():
            try:
                serve.wait_ready(process, server.url, timeout=180)
            except Exception as exc:
                log = server.log_text()
                raise AssertionError(f"{exc}\n--- deepaas-run log ---\n{log}") from None
        yield {key: server for key, (_, server) in started.items()}
    finally:
        for process, _ in started.values():
            serve.stop(process)
