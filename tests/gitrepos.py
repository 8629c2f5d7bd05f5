"""Real git repositories for the sync tests: made with the git CLI, served over HTTP by git's
own `git http-backend` (the CGI program Debian's git ships) behind a small threaded server.

The server can demand basic auth, go away (connection refused) and come back on its port,
and a repository can be deleted or force-pushed — the failures the sync must survive.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Catalog Maintainer",
    "GIT_AUTHOR_EMAIL": "maintainer@example.org",
    "GIT_COMMITTER_NAME": "Catalog Maintainer",
    "GIT_COMMITTER_EMAIL": "maintainer@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def need_git() -> None:
    if shutil.which("git") is None or not HTTP_BACKEND.exists():
        pytest.skip("git and git-http-backend are needed (Debian package git)")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV}, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def init_repo(path: Path, branch: str = "main") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    return path


def commit_all(work: Path, message: str) -> str:
    """Commit everything in the work tree (additions, changes, deletions); the new commit id."""
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    return git(work, "rev-parse", "HEAD")


def bare_clone(work: Path, bare: Path) -> Path:
    git(work.parent, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def push(work: Path, bare: Path, branch: str = "main", force: bool = False) -> str:
    args = ["push", "-q", str(bare), f"HEAD:refs/heads/{branch}"]
    if force:
        args.insert(1, "--force")
    git(work, *args)
    return git(work, "rev-parse", "HEAD")


class _Handler(BaseHTTPRequestHandler):
    server: GitHttpServer  # type: ignore[assignment]

    def log_message(self, *args: object) -> None:
        pass

    def _cgi(self) -> None:
        srv = self.server
        if srv.auth is not None:
            want = "Basic " + base64.b64encode(f"{srv.auth[0]}:{srv.auth[1]}".encode()).decode()
            if self.headers.get("Authorization") != want:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(srv.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": srv.auth[0] if srv.auth else "",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        srv.requests.append(f"{self.command} {path}?{query}")
        done = subprocess.run([str(HTTP_BACKEND)], input=body, env=env, capture_output=True,
                              timeout=60, check=False)  # fmt: skip
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _cgi
    do_POST = _cgi


class GitHttpServer(ThreadingHTTPServer):
    """`git http-backend` for every bare repository under `root`, on 127.0.0.1."""

    daemon_threads = True

    def __init__(self, root: Path, port: int = 0, auth: tuple[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.root = root
        self.auth = auth
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
