"""`deepmarket demo` (what `make run` runs) end to end, in its own dev-cluster state dir.

`$DEEPMARKET_DEV_DIR` points the demo at a temp dir, so a dev cluster someone else runs is
never touched; the fixture's teardown runs `deepmarket dev down` there. The first test runs
`--once` (everything up, self-checked, then stopped); the second runs the demo as a user does,
checks from outside what it serves, and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepmarket.catalog import load_catalog
from deepmarket.modules import http

pytestmark = [pytest.mark.cluster, pytest.mark.deepaas]

ROOT = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-m", "deepmarket", "demo", "--site-port", "0", "--module-port", "0"]
SAMPLE = ROOT / "catalog" / "digits-classifier" / "samples" / "seven.png"


@pytest.fixture(scope="module")
def dev_env(cluster_binaries, tmp_path_factory) -> Iterator[dict[str, str]]:
    """An environment whose dev cluster lives in a temp dir; stopped and removed afterwards."""
    env = {**os.environ, "DEEPMARKET_DEV_DIR": str(tmp_path_factory.mktemp("demo-dev"))}
    yield env
    subprocess.run(
        [sys.executable, "-m", "deepmarket", "dev", "down"], env=env, cwd=ROOT, timeout=120
    )


def _deploy_true() -> set[str]:
    return {m.id for m in load_catalog(ROOT) if m.deploy}


def _ready_deepmodules(kubectl: Path, kubeconfig: str) -> dict[str, str]:
    out = subprocess.run(
        [str(kubectl), "--kubeconfig", kubeconfig, "get", "deepmodules", "-n", "deepmarket",
         "-o", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return {
        i["metadata"]["name"]: next(
            c["status"] for c in i["status"]["conditions"] if c["type"] == "Ready"
        )
        for i in json.loads(out)["items"]
    }


def test_once_brings_everything_up_checks_it_and_exits_zero(dev_env, cluster_binaries):
    done = subprocess.run(
        [*DEMO, "--once"], env=dev_env, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "module check` through" in done.stderr
    assert "demo checks passed" in done.stderr
    assert "deepmarket dev down" in done.stderr
    kubeconfig = str(Path(dev_env["DEEPMARKET_DEV_DIR"]) / "kubeconfig")
    ready = _ready_deepmodules(cluster_binaries["kubectl"], kubeconfig)
    assert {name for name, status in ready.items() if status == "True"} == _deploy_true()


def _read_until_up(proc: subprocess.Popen, timeout: float) -> dict[str, str]:
    """The summary the demo prints once everything answers: marketplace, API, kubeconfig."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: dict[str, str] = {}
    text = ""
    while "logs" not in seen:
        line = lines.get(timeout=timeout)
        if line is None:
            pytest.fail(f"the demo ended before it was up (exit {proc.wait()}):\n{text}")
        text += line
        match = re.match(r"\s+(marketplace|digits API|logs)\s+(\S+)", line)
        if match:
            seen[match.group(1)] = match.group(2)
        if line.startswith(("export KUBECONFIG=", "  cluster      export KUBECONFIG=")):
            seen["kubeconfig"] = line.split("=", 1)[1].strip()
    return seen


def test_demo_serves_try_it_and_stops_cleanly_on_sigterm(dev_env, cluster_binaries, tmp_path):
    log = tmp_path / "demo.err"
    with log.open("w") as err:
        proc = subprocess.Popen(
            DEMO, env=dev_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True
        )
    try:
        up = _read_until_up(proc, timeout=600)
        site, api = up["marketplace"], up["digits API"]
        origin = site.rstrip("/")

        # Every deploy: true module is a Ready DeepModule in the demo's cluster.
        ready = _ready_deepmodules(cluster_binaries["kubectl"], up["kubeconfig"])
        assert {name for name, status in ready.items() if status == "True"} == _deploy_true()

        # The marketplace's digits page carries the try-it base URL of the live module.
        with urllib.request.urlopen(f"{site}modules/digits-classifier/", timeout=30) as page:
            assert api in page.read().decode()

        # A browser-style predict through the served try-it path answers, with CORS.
        body, kind = http.multipart({}, {"data": SAMPLE})
        answer = http.request(
            "POST",
            f"{api}v2/models/digits/predict/",
            body=body,
            headers={"Content-Type": kind, "Accept": "application/json", "Origin": origin},
            timeout=60,
        )
        assert answer.status == 200, answer.text()
        assert answer.json()["label"] == 7
        assert answer.headers["Access-Control-Allow-Origin"] == origin
        # Only the module's own path is served.
        outside = http.request("GET", api.rsplit("/digits-classifier/", 1)[0] + "/v2/")
        assert outside.status == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert code == 0, log.read_text()[-3000:]
    stopped = log.read_text()
    for name in ("site", "module server", "operator"):
        assert f"stopping {name}" in stopped
    # Its servers are gone: nothing answers on their ports any more.
    for url in (site, api + "v2/"):
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=5)
