"""Fixtures for the marketplace tests: generated catalogs, built sites, a static server, Chromium.

Expected results are always computed from the generated catalog, never written down by hand.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deepmarket.site.build import build_site
from deepmarket.site.samplecat import write_catalog

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


@pytest.fixture(scope="session")
def generated_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """A 30-module generated catalog (one carrying XSS payloads) built with strict mode."""
    root = tmp_path_factory.mktemp("catalog")
    modules = write_catalog(root, 30, overrides={"#4": XSS_OVERRIDES})
    out = build_site(
        MKDOCS_YML, site_dir=root / "public", catalog=root, deploy_base_url="", strict=True
    )
    return BuiltSite(root, out, modules)


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


@pytest.fixture(scope="session")
def site_url(generated_site: BuiltSite) -> Iterator[str]:
    with static_server(generated_site.out) as (url, _):
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (its own browser download cannot work here)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; any JavaScript error or dialog on it fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.dm_errors, pg.dm_dialogs = errors, dialogs
    yield pg
    context.close()
    assert not dialogs, f"a dialog opened: {dialogs}"
    assert not errors, f"JavaScript errors: {errors}"
