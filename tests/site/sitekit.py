"""Shared pieces of the marketplace tests (a plain module: `conftest` names collide)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MKDOCS_YML = REPO / "mkdocs.yml"
ARTIFACTS = REPO / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

XSS_ID = "xss-probe"
# Every way a pull request could try to run script through a description.
XSS_DESCRIPTION = """Looks harmless. xssmarkerword

<script>window.__xss = "script"; alert("script")</script>
<img src="x" onerror="window.__xss = 'onerror'; alert('onerror')">
<a href="javascript:alert('href')">click me</a>
[markdown link](javascript:alert('md'))
<iframe src="javascript:alert('iframe')"></iframe>
<svg onload="window.__xss = 'svg'; alert('svg')"></svg>
<div style="background:url(javascript:alert('css'))" onmouseover="alert('hover')">hover</div>
"""
XSS_OVERRIDES: dict[str, Any] = {
    "id": XSS_ID,
    "title": 'XSS <script>alert("title")</script> probe',
    "summary": "Summary with <img src=x onerror=\"alert('summary')\"> inside",
    "description": XSS_DESCRIPTION,
}


@dataclass
class BuiltSite:
    catalog_root: Path
    out: Path
    modules: list[dict[str, Any]]  # module.yml data, in catalog order


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def static_server(directory: Path) -> Iterator[tuple[str, http.server.ThreadingHTTPServer]]:
    """Serve `directory` on a free loopback port; yields its base URL (ending in /)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
