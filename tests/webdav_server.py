"""A real WebDAV server (wsgidav) on a free loopback port, with basic auth (tests).

Nextcloud serves each user's files under `/remote.php/dav/files/<user>/`; the share is mounted
at that path so URLs look like the ones users paste. Stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deepmarket.modules import serve

USER = "alice"
PASSWORD = "app-pass-Xq7-2ffd9"  # a Nextcloud-style app password
DAV_PREFIX = f"/remote.php/dav/files/{USER}"


@dataclass(frozen=True)
class WebDav:
    root: Path  # the user's files on disk
    base: str  # http://127.0.0.1:PORT/remote.php/dav/files/alice
    log: Path

    def url(self, folder: str) -> str:
        return f"{self.base}/{folder.strip('/')}"


def require_tools() -> None:
    if not shutil.which("rclone"):
        pytest.skip("rclone is not installed (scripts/install-system-deps.sh installs it)")
    if not (Path(sys.executable).parent / "wsgidav").exists() and not shutil.which("wsgidav"):
        pytest.skip("wsgidav is not installed (pip install -e '.[test]')")


def _wait_listening(
    port: int, process: subprocess.Popen, log: Path, timeout: float = 60, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"wsgidav exited {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"wsgidav did not listen within {timeout}s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def webdav(tmp: Path, host: str = "127.0.0.1") -> Iterator[WebDav]:
    """`host`: the address to bind, e.g. the real node's bridge gateway, which its pods reach."""
    root = tmp / "dav-root"
    root.mkdir(parents=True)
    port = serve.free_port(host)
    config = {
        "host": host,
        "port": port,
        "provider_mapping": {DAV_PREFIX: str(root)},
        "http_authenticator": {
            "domain_controller": None,  # SimpleDomainController
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
        "verbose": 3,
        "logging": {"enable": True},
    }
    config_file = tmp / "wsgidav.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = tmp / "wsgidav.log"
    exe = Path(sys.executable).parent / "wsgidav"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(exe) if exe.exists() else "wsgidav", "--config", str(config_file)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_listening(port, process, log, host=host)
        yield WebDav(root, f"http://{host}:{port}{DAV_PREFIX}", log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def obscure(password: str) -> str:
    """rclone's obscured form of a password, through stdin (never a command line)."""
    done = subprocess.run(
        ["rclone", "obscure", "-"], input=password, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code
