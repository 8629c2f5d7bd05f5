"""Run `deepaas-run` for one installed module on loopback, optionally behind the CORS proxy.

`deepaas-run` warms the model before it opens its port; the proxy opens its own port only
after that, so "port open" keeps meaning "ready" for whoever waits on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from deepmarket.errors import UserError

LOOPBACK = "127.0.0.1"
MAX_BODY = 16 * 1024 * 1024  # bytes per request; the module may set a lower limit itself
READY_TIMEOUT = 300.0


def deepaas_run_executable() -> str:
    """The `deepaas-run` beside this Python (a venv's own), else the first on PATH."""
    beside = Path(sys.executable).parent / "deepaas-run"
    if beside.is_file():
        return str(beside)
    found = shutil.which("deepaas-run")
    if not found:
        raise UserError("deepaas-run not found; install deepaas (pip install deepaas)")
    return found


def deepaas_command(
    executable: str, model: str | None, host: str, port: int, max_body: int = MAX_BODY
) -> list[str]:
    """The deepaas-run command line; no model name serves every installed model."""
    command = [executable, "--listen-ip", host, "--listen-port", str(port)]
    if model:
        command += ["--model-name", model]
    return [*command, "--client-max-size", str(max_body)]


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int, flag: str = "--port", hint: str = "") -> int:
    """Fail before a slow warm-up, with a fix, rather than with aiohttp's traceback after it.
    Returns the port, or a free one when `port` is 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another {flag}{hint}"
            ) from None
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when its parent dies, so it is never orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_deepaas(
    model: str | None,
    port: int,
    *,
    host: str = LOOPBACK,
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
    max_body: int = MAX_BODY,
) -> subprocess.Popen:
    command = deepaas_command(deepaas_run_executable(), model, host, port, max_body)
    full_env = {**os.environ, **(env or {}), "DEEPAAS_V2_MODEL": model or ""}
    return subprocess.Popen(
        command,
        env=full_env,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def wait_ready(process: subprocess.Popen, base_url: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll the readiness endpoint (`GET /v2/models/`) until it answers 200."""
    deadline = time.monotonic() + timeout
    url = base_url.rstrip("/") + "/v2/models/"
    while True:
        code = process.poll()
        if code is not None:
            raise UserError(
                f"deepaas-run exited with status {code} before it was ready; "
                "its log says why (above, or in the captured output)"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    json.load(answer)
                    return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise UserError(f"deepaas-run did not become ready at {url} within {timeout:.0f}s")
        time.sleep(0.1)


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve(
    model: str, port: int, origins: Sequence[str], host: str = LOOPBACK, prefix: str = ""
) -> int:
    """Serve until interrupted. Without origins or a path prefix deepaas-run replaces this
    process; with either, the proxy in front of it adds CORS and/or strips the prefix."""
    if not origins and not prefix:
        command = deepaas_command(deepaas_run_executable(), model, host, port)
        print(f"deepmarket: exec {' '.join(command)}", file=sys.stderr, flush=True)
        os.execve(command[0], command, {**os.environ, "DEEPAAS_V2_MODEL": model})
    from aiohttp import web

    from deepmarket.modules.cors import proxy_app

    backend_port = free_port(LOOPBACK)
    backend = f"http://{LOOPBACK}:{backend_port}"
    print(
        f"deepmarket: starting deepaas-run for model {model!r} on {backend} "
        "(warm-up first; this can take a while)",
        file=sys.stderr,
        flush=True,
    )
    process = start_deepaas(model, backend_port)
    try:
        wait_ready(process, backend)
        print(
            f"deepmarket: serving http://{host}:{port}{prefix}/ "
            f"for {', '.join(origins) or 'same-origin callers'} "
            f"(proxy -> {backend}); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        web.run_app(
            proxy_app(backend, tuple(origins), MAX_BODY, prefix),
            host=host,
            port=port,
            print=None,
            access_log=None,
        )
    finally:
        stop(process)
    return 0
