"""The real checkers the site's tests run: axe-core in Chromium and the W3C Nu Html Checker.

Both are fetched by scripts/fetch-checkers.sh (a prerequisite of `make test`) into
~/.cache/deepmarket/checkers/; a test skips with that command as its reason when they are
missing (and fails under CI=true).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DEEPMARKET_CACHE", Path.home() / ".cache" / "deepmarket")) / "checkers"
FETCH = "bash scripts/fetch-checkers.sh (or make checkers)"


def _fetch_script_value(name: str) -> str:
    text = (REPO / "scripts" / "fetch-checkers.sh").read_text()
    return re.search(rf'{name}="\$\{{{name}:-([^}}]+)\}}"', text).group(1)


def _vnu_version() -> str:
    pom = (REPO / "scripts" / "checkers" / "pom.xml").read_text()
    return re.search(r"<vnu.version>([^<]+)</vnu.version>", pom).group(1)


def axe_source() -> str:
    """axe-core's browser bundle, or skip."""
    version = _fetch_script_value("AXE_VERSION")
    path = CACHE / f"axe-core-{version}" / "node_modules" / "axe-core" / "axe.min.js"
    if not path.is_file():
        pytest.skip(f"axe-core {version} is not in {CACHE}: run {FETCH}")
    return path.read_text()


def vnu_classpath() -> str:
    """The Nu Html Checker's jars as a Java classpath, or skip."""
    folder = CACHE / f"vnu-{_vnu_version()}"
    if not (folder / ".complete").is_file():
        pytest.skip(f"the Nu Html Checker is not in {CACHE}: run {FETCH}")
    if shutil.which("java") is None:
        pytest.skip("java is missing: run scripts/install-system-deps.sh")
    return f"{folder}/*"


def nu_check(paths: list[Path]) -> list[dict[str, Any]]:
    """Every error and warning the Nu Html Checker reports for these HTML files."""
    result = subprocess.run(
        [
            "java",
            "-Xss4m",  # the checker recurses deeply on large pages
            "-cp",
            vnu_classpath(),
            "nu.validator.client.SimpleCommandLineValidator",
            "--format",
            "json",
            *[str(p) for p in paths],
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode not in (0, 1):
        raise AssertionError(f"the Nu Html Checker failed to run: {result.stderr[-2000:]}")
    return json.loads(result.stderr or result.stdout)["messages"]


# Finite CSS transitions and animations still running (the search overlay and its results fade
# in): axe would measure a colour halfway through the fade, not the one a visitor reads.
SETTLING = """() => document.getAnimations().every(a =>
    a.playState !== 'running' || a.effect?.getComputedTiming().iterations === Infinity)"""


def axe_run(page: Any, source: str) -> list[dict[str, Any]]:
    """axe-core's violations on the page once its transitions have ended (WCAG 2.2 A/AA and
    best practices)."""
    page.wait_for_function(SETTLING, timeout=30_000)
    page.add_script_tag(content=source)
    return page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html,
                                          summary: n.failureSummary})),
            }));
        }"""
    )
