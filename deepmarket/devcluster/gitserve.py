"""Git repositories over git's smart HTTP, served by git's own `git http-backend` (the CGI
program Debian's git ships) behind a small threaded server.

The demo serves the checkout's repository this way to the operator's pods on the real node
(read-only, bound to the node bridge's gateway address: pods reach the host there), so a
CatalogSource fetches it the way it fetches GitHub. The sync tests serve their bare
repositories with it too (tests/gitrepos.py), with basic auth and restarts.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTTP_BACKEND = Path("/usr/lib/git-core/git-http-backend")
# The only requests a read-only server answers: the ref advertisement and the fetch itself.
READ_ONLY = (("GET", "/info/refs", "service=git-upload-pack"), ("POST", "/git-upload-pack", ""))


def read_only_request(method: str, path: str, query: str) -> bool:
    """A fetch (smart HTTP's upload-pack) and nothing else: no push, no dumb-HTTP file reads."""
    return any(method == m and path.endswith(suffix) and query == q for m, suffix, q in READ_ONLY)


def split_repo(path: str, repos: Mapping[str, Path]) -> tuple[Path, str] | None:
    """`/<name>/<rest>` → (the repository served as `name`, `/<rest>`), or None."""
    name, _, rest = path.lstrip("/").partition("/")
    repo = repos.get(name)
    return (repo, "/" + rest) if repo is not None else None


class _Handler(BaseHTTPRequestHandler):
    server: GitHttpServer  # type: ignore[assignment]

    def log_message(self, *args: object) -> None:
        pass

    def _refuse(self, status: int, text: str, extra: Mapping[str, str] | None = None) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _cgi(self) -> None:
        srv = self.server
        if srv.auth is not None:
            want = "Basic " + base64.b64encode(f"{srv.auth[0]}:{srv.auth[1]}".encode()).decode()
            if self.headers.get("Authorization") != want:
                self._refuse(
                    401, "authentication required", {"WWW-Authenticate": 'Basic realm="git"'}
                )
                return
        path, _, query = self.path.partition("?")
        if srv.read_only and not read_only_request(self.command, path, query):
            self._refuse(403, "read-only: only git fetch (upload-pack) is served here")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_USER": srv.auth[0] if srv.auth else "",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        if srv.repos is not None:  # named repositories only, wherever they are
            found = split_repo(path, srv.repos)
            if found is None:
                self._refuse(404, f"no repository at {path}")
                return
            env["PATH_TRANSLATED"] = f"{found[0]}{found[1]}"
        else:  # every repository under root
            env["GIT_PROJECT_ROOT"] = str(srv.root)
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
    """`git http-backend` for every repository under `root` or, with `repos`, for exactly
    those (`/<name>/...` → the repository at `repos[name]`, a work tree's too). `read_only`:
    fetches only. `host` may be an address that does not exist yet (a bridge created with the
    first pod): the socket binds it anyway (IP_FREEBIND) and answers once it does."""

    daemon_threads = True

    def __init__(
        self,
        root: Path,
        port: int = 0,
        auth: tuple[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        repos: Mapping[str, Path] | None = None,
        read_only: bool = False,
    ) -> None:
        self.root = root
        self.auth = auth
        self.repos = dict(repos) if repos is not None else None
        self.read_only = read_only
        self.requests: list[str] = []
        super().__init__((host, port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def server_bind(self) -> None:
        if hasattr(socket, "IP_FREEBIND") and self.address_family == socket.AF_INET:
            self.socket.setsockopt(socket.SOL_IP, socket.IP_FREEBIND, 1)
        super().server_bind()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, repo: str) -> str:
        return f"http://{self.server_address[0]}:{self.port}/{repo}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
