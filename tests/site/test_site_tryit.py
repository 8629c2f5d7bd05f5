"""Try it, for real: the module page's form, built from a live DEEPaaS server's swagger.json,
posts a digit image across origins to `deepmarket module serve --cors-origin` and shows the
prediction (JSON, then the PNG chart)."""

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
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sitekit import ARTIFACTS, MKDOCS_YML, REPO, static_server

from deepmarket.site.build import build_site

pytestmark = [pytest.mark.browser, pytest.mark.deepaas]

MODULE = "digits-classifier"
SAMPLE = REPO / "catalog" / MODULE / "samples" / "seven.png"
READY_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"deepmarket module serve exited ({process.returncode}):\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"{url} not ready within {READY_TIMEOUT:.0f}s:\n{log.read_text()}")


def stop_group(process: subprocess.Popen) -> None:
    """Stop the server and its deepaas-run child: it runs in its own process group."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def tryit_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A site whose only module is deployed at a live, CORS-enabled DEEPaaS server.

    The base URL puts the module id in the host name (`http://{id}.localhost:PORT`): Chromium
    resolves every *.localhost name to loopback, so one local server stands for the
    deployment, and the template's {id} substitution is exercised too.
    """
    if not (REPO / "catalog" / MODULE / "module.yml").is_file():
        pytest.skip(f"catalog/{MODULE} is missing: the reference module is not in the catalog")
    help_run = subprocess.run(
        [sys.executable, "-m", "deepmarket", "module", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    if help_run.returncode != 0 or "--cors-origin" not in help_run.stdout:
        pytest.skip("`deepmarket module serve --cors-origin` is not available")

    root = tmp_path_factory.mktemp("tryit")
    shutil.copytree(REPO / "catalog" / MODULE, root / "catalog" / MODULE)
    (root / "modules.yml").write_text(f"modules:\n  - id: {MODULE}\n    deploy: true\n")
    out = root / "public"
    out.mkdir()
    port = free_port()
    with static_server(out) as (site_url, _):
        build_site(
            MKDOCS_YML,
            site_dir=out,
            catalog=root,
            deploy_base_url=f"http://{{id}}.localhost:{port}",
        )
        log = root / "serve.log"
        with log.open("w") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "deepmarket",
                    "module",
                    "serve",
                    MODULE,
                    "--port",
                    str(port),
                    "--cors-origin",
                    site_url.rstrip("/"),
                ],
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_until_ready(process, f"http://127.0.0.1:{port}/v2/models/", log)
            yield site_url, log.read_text()
        finally:
            stop_group(process)


def test_tryit_form_returns_a_prediction(page, tryit_site):
    site_url, _ = tryit_site
    page.goto(f"{site_url}modules/{MODULE}/")
    form = page.wait_for_selector("form.dm-try", timeout=30_000)
    assert form is not None
    # The fields come from the live swagger.json: the file upload and the accept choice.
    assert page.get_attribute("form.dm-try input[name=data]", "type") == "file"
    options = page.eval_on_selector_all(
        "form.dm-try select[name=accept] option", "os => os.map(o => o.value)"
    )
    assert "application/json" in options and "image/png" in options

    page.set_input_files("form.dm-try input[name=data]", str(SAMPLE))
    page.select_option("form.dm-try select[name=accept]", "application/json")
    page.click("form.dm-try button[type=submit]")
    code = page.wait_for_selector(".dm-try__result pre code", timeout=60_000)
    result = json.loads(code.inner_text())
    assert result["label"] == 7, result
    assert "HTTP 200" in page.inner_text(".dm-try__result .dm-try__status")

    page.select_option("form.dm-try select[name=accept]", "image/png")
    page.click("form.dm-try button[type=submit]")
    image = page.wait_for_selector(".dm-try__result img.dm-try__image", timeout=60_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "site-tryit.png"), full_page=True)
