"""Fixtures for the marketplace tests: generated catalogs, built sites, a static server, Chromium.

Expected results are always computed from the generated catalog, never written down by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from sitekit import CHROMIUM, CHROMIUM_ARGS, MKDOCS_YML, XSS_OVERRIDES, BuiltSite, static_server

from deepmarket.site.build import build_site
from deepmarket.site.samplecat import write_catalog


@pytest.fixture(scope="session")
def generated_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    """A 30-module generated catalog (one carrying XSS payloads) built with strict mode."""
    root = tmp_path_factory.mktemp("catalog")
    modules = write_catalog(root, 30, overrides={"#4": XSS_OVERRIDES})
    out = build_site(
        MKDOCS_YML, site_dir=root / "public", catalog=root, deploy_base_url="", strict=True
    )
    return BuiltSite(root, out, modules)


@pytest.fixture(scope="session")
def site_url(generated_site: BuiltSite) -> Iterator[str]:
    with static_server(generated_site.out) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (its own browser download cannot work here).

    Module-scoped: Playwright's sync API runs an event loop in the main thread while it is
    open, which would break every later test that calls asyncio.run() or opens its own."""
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
