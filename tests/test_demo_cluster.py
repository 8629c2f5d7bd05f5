"""`deepmarket demo` (what `make run` runs) end to end, in its own dev-cluster state dir.

`$DEEPMARKET_DEV_DIR` points the demo at a temp dir, so a dev cluster someone else runs is
never touched; the fixture's teardown runs `deepmarket dev down` there. The first test runs
`--once` (everything up, self-checked, then stopped); the others run the demo as a user does,
check from outside what it serves (the try-it form in Chromium too), and stop it with SIGTERM.
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
from typing import Any

import pytest

from deepmarket.catalog import load_catalog
from deepmarket.devcluster import nodeconfig, realnode
from deepmarket.modules import http

pytestmark = [pytest.mark.cluster, pytest.mark.deepaas]

ROOT = Path(__file__).resolve().parents[1]
DEMO = [sys.executable, "-m", "deepmarket", "demo", "--site-port", "0", "--module-port", "0"]
SAMPLE = ROOT / "catalog" / "digits-classifier" / "samples" / "seven.png"
CHROMIUM = "/usr/bin/chromium"
# Where the machine can run the real node, the demo must use it (the digits module's pod runs
# there, behind the local ingress, and the operator runs in the cluster); elsewhere it serves
# the module on loopback and runs the operator as a host process.
REAL = not realnode.missing_prerequisites()
OPERATOR_SA = "system:serviceaccount:deepmarket-system:deepmarket-operator"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def dev_env(cluster_binaries, tmp_path_factory) -> Iterator[dict[str, str]]:
    """An environment whose dev cluster lives in a temp dir; stopped and removed afterwards."""
    env = {**os.environ, "DEEPMARKET_DEV_DIR": str(tmp_path_factory.mktemp("demo-dev"))}
    if REAL:
        # The demo's cluster takes the machine's one real node: wait for another test run's.
        realnode.wait_until_free()
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
    if REAL:
        assert "no real node" not in done.stderr, done.stderr[-3000:]
        table = [line.split() for line in done.stdout.splitlines() if line.startswith("digits")]
        assert table and table[0][3:5] == ["real", "node"], done.stdout
        # `module check` passed against the module's in-cluster Service too.
        assert done.stderr.count("module check` through http://") == 2, done.stderr[-3000:]
        # The in-cluster operator ran the demo, not a host process: it says so, and the audit
        # log shows its ServiceAccount (from its pod) creating the digits module's children.
        assert re.search(r"operator: in the cluster \(2 replicas, leader \S+\)", done.stdout)
        assert "started operator" not in done.stderr, done.stderr[-3000:]
        assert "read-only at http://" in done.stderr  # the checkout, served over git HTTP
        _assert_operator_pod_created_digits(Path(dev_env["DEEPMARKET_DEV_DIR"]))
    else:
        assert "operator: host process (" in done.stdout, done.stdout
    assert "deepmarket dev down" in done.stderr
    kubeconfig = str(Path(dev_env["DEEPMARKET_DEV_DIR"]) / "kubeconfig")
    ready = _ready_deepmodules(cluster_binaries["kubectl"], kubeconfig)
    assert {name for name, status in ready.items() if status == "True"} == _deploy_true()


def _assert_operator_pod_created_digits(dev_dir: Path) -> None:
    events = [json.loads(line) for line in (dev_dir / "cluster" / "audit.log").open()]
    created = {}
    for e in events:
        ref = e.get("objectRef") or {}
        if (
            ref.get("namespace") == "deepmarket"
            and ref.get("name") == "digits-classifier"
            and ref.get("resource") in {"deployments", "services"}
            and e["verb"] in {"create", "patch"}
            and e.get("responseStatus", {}).get("code") == 201
        ):
            created[ref["resource"]] = e["user"]
    assert set(created) == {"deployments", "services"}, created
    for user in created.values():
        assert user["username"] == OPERATOR_SA, user
        pod = (user.get("extra") or {}).get("authentication.kubernetes.io/pod-name") or [""]
        assert pod[0].startswith("deepmarket-operator-"), user


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
        if "export KUBECONFIG=" in line:
            seen["kubeconfig"] = line.split("=", 1)[1].strip()
    return seen


class Running:
    """`deepmarket demo` as a user runs it, and what its summary says."""

    def __init__(self, env: dict[str, str], err_log: Path) -> None:
        self.err_log = err_log
        with err_log.open("w") as err:
            self.proc = subprocess.Popen(
                DEMO, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True
            )
        up = _read_until_up(self.proc, timeout=600)
        self.site, self.api, self.kubeconfig = up["marketplace"], up["digits API"], up["kubeconfig"]
        self.origin = self.site.rstrip("/")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


@pytest.fixture(scope="module")
def running(dev_env, tmp_path_factory) -> Iterator[Running]:
    demo = Running(dev_env, tmp_path_factory.mktemp("demo-run") / "demo.err")
    try:
        yield demo
    finally:
        demo.stop()


def test_deploy_true_modules_are_ready_and_the_page_calls_the_live_module(
    running, cluster_binaries
):
    ready = _ready_deepmodules(cluster_binaries["kubectl"], running.kubeconfig)
    if REAL:
        pods = subprocess.run(
            [str(cluster_binaries["kubectl"]), "--kubeconfig", running.kubeconfig, "get", "pods",
             "-n", "deepmarket", "-l", "app.kubernetes.io/instance=digits-classifier", "-o",
             "json"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout  # fmt: skip
        nodes = {p["spec"].get("nodeName") for p in json.loads(pods)["items"]}
        assert nodes == {nodeconfig.NODE_NAME}
    assert {name for name, status in ready.items() if status == "True"} == _deploy_true()
    with urllib.request.urlopen(f"{running.site}modules/digits-classifier/", timeout=30) as page:
        assert running.api in page.read().decode()


def test_predict_answers_through_the_try_it_path_with_cors(running):
    body, kind = http.multipart({}, {"data": SAMPLE})
    headers = {"Content-Type": kind, "Accept": "application/json", "Origin": running.origin}
    answer = http.request(
        "POST", f"{running.api}v2/models/digits/predict/", body=body, headers=headers, timeout=60
    )
    assert answer.status == 200, answer.text()
    assert answer.json()["label"] == 7
    assert answer.headers["Access-Control-Allow-Origin"] == running.origin
    # Only the module's own path is served.
    outside = http.request("GET", running.api.rsplit("/digits-classifier/", 1)[0] + "/v2/")
    assert outside.status == 404


@pytest.mark.browser
def test_try_it_form_predicts_in_chromium(running):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    errors: list[Any] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{running.site}modules/digits-classifier/")
            page.wait_for_selector("form.dm-try", timeout=60_000)
            page.set_input_files("form.dm-try input[name=data]", str(SAMPLE))
            page.select_option("form.dm-try select[name=accept]", "application/json")
            page.click("form.dm-try button[type=submit]")
            code = page.wait_for_selector(".dm-try__result pre code", timeout=60_000)
            assert json.loads(code.inner_text())["label"] == 7
            assert "HTTP 200" in page.inner_text(".dm-try__result .dm-try__status")
            (ROOT / "artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "artifacts" / "demo-tryit.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_sigterm_stops_the_operator_module_and_site(running):
    code = running.stop()
    said = running.err_log.read_text()
    assert code == 0, said[-3000:]
    stopped = (
        ("site", "ingress", "the git server") if REAL else ("site", "module server", "operator")
    )
    for name in stopped:
        assert f"stopping {name}" in said
    assert "deepmarket dev down" in said
    # Its servers are gone: nothing answers on their ports any more.
    for url in (running.site, running.api + "v2/"):
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=5)
