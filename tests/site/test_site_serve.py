"""`deepmarket site serve` tells the truth: located messages in the terminal and on the page.

mkdocs' dev server stalls every request after a failed rebuild ("The server will appear stuck");
a broken catalog must instead give an error page naming file:line:col, and fixing it must bring
the marketplace back, all without restarting the server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from sitekit import REPO

from deepmarket.site.samplecat import write_catalog


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:  # a stalled server fails here
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(condition, what: str, log: Path, process, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, log.read_text()
        try:
            result = condition()
        except OSError:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()}"
        time.sleep(0.3)


def test_serve_reports_a_broken_catalog_in_the_terminal_and_the_browser(tmp_path):
    catalog = tmp_path / "catalog-root"
    modules = write_catalog(catalog, 3)
    first = catalog / "catalog" / modules[0]["id"] / "module.yml"
    data = json.loads(first.read_text())
    data["summary"] = 5  # a type error, at a known position
    first.write_text(json.dumps(data, indent=2))
    where = f"catalog/{modules[0]['id']}/module.yml:4:14"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "serve.log"
    command = ["site", "serve", "--port", str(port), "--catalog", str(catalog)]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "deepmarket", *command],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        # Broken from the start: the server still starts, the terminal and the page say where.
        status, home = wait_for(lambda: get(url), "the first page", log, process)
        assert status == 200 and "dm-build-error" in home
        assert f"<code>{where}</code> summary: expected a string, got an integer" in home
        assert f"  {where}: summary: expected a string" in log.read_text()
        status, missing = get(f"{url}modules/{modules[0]['id']}/")
        assert status == 404 and where in missing  # mkdocs' 404 page carries the panel too

        # Fixed while serving: the marketplace comes back, without the panel.
        data["summary"] = "Back again."
        first.write_text(json.dumps(data, indent=2))
        home = wait_for(
            lambda: (page := get(url)[1]).count('class="dm-card"') == 3 and page,
            "the fixed catalog",
            log,
            process,
        )
        assert "dm-build-error" not in home

        # Broken again by a live edit: the last good catalog stays, the panel names the line.
        first.write_text(first.read_text().replace('"Back again."', '"Back: again" x'))
        page = wait_for(
            lambda: "dm-build-error" in (p := get(f"{url}modules/{modules[0]['id']}/")[1]) and p,
            "the rebuild after the live edit",
            log,
            process,
        )
        assert f"catalog/{modules[0]['id']}/module.yml:4:" in page
        assert "YAML syntax error" in page
        assert page.count("dm-build-error") == 1
        assert "Traceback" not in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=15)
