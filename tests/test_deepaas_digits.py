"""The example module through a real `deepaas-run` (and `deepaas-cli`, and the CORS proxy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from deepaas_servers import REPO, SEVEN, Server, require_deepaas, running

from deepmarket.modules import http, serve

pytestmark = pytest.mark.deepaas

PREDICT = "/v2/models/digits/predict/"
PAGE_ORIGIN = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Server:
    require_deepaas()
    tmp = tmp_path_factory.mktemp("digits")
    with running("digits", tmp / "deepaas.log", {"DIGITS_MODEL_DIR": str(tmp / "weights")}) as s:
        yield s


def post_image(url: str, data: bytes | None, accept: str | None = None) -> http.Answer:
    files = {"data": ("upload.png", data)} if data is not None else {}
    body, kind = http.multipart({}, files)
    headers = {"Content-Type": kind, **({"Accept": accept} if accept else {})}
    return http.request("POST", url + PREDICT, body=body, headers=headers)


def test_predicts_the_digit_in_a_held_out_image(digits):
    answer = post_image(digits.url, SEVEN.read_bytes())
    assert answer.status == 200, answer.text()
    result = answer.json()
    assert result["label"] == 7
    assert result["probabilities"][0] == {"label": 7, "probability": result["confidence"]}
    assert sorted(p["label"] for p in result["probabilities"]) == list(range(10))


def test_png_accept_returns_a_png_chart(digits):
    answer = post_image(digits.url, SEVEN.read_bytes(), accept="image/png")
    assert answer.status == 200, answer.text()
    assert answer.content_type == "image/png"
    assert answer.body.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    ("data", "accept", "status", "says"),
    [
        (b"digit: seven\n", None, 400, "not an image Pillow can read"),
        (b"", None, 400, "the uploaded file is empty"),
        (b"\x89PNG" + b"\0" * (5 * 1024 * 1024), None, 413, "the limit is 4194304"),
        (None, None, 422, "Missing data for required field"),
        (b"\x89PNG", "text/html", 422, "Must be one of: application/json, image/png"),
    ],
    ids=["not-an-image", "empty", "oversized", "no-file", "unsupported-accept"],
)
def test_bad_input_gets_a_4xx_with_a_message(digits, data, accept, status, says):
    answer = post_image(digits.url, data, accept=accept)
    assert answer.status == status, answer.text()
    assert answer.content_type == "application/json"
    assert says in answer.text()
    assert "Traceback" not in answer.text()


def _metadata(server: Server) -> dict:
    return http.request("GET", server.url + "/v2/models/").json()["models"][0]


def test_cli_training_writes_weights_that_a_restarted_server_serves(tmp_path):
    require_deepaas()
    from deepmarket_digits import classifier, images, samples

    weights = tmp_path / "weights"
    env = {"DIGITS_MODEL_DIR": str(weights)}
    with running("digits", tmp_path / "before.log", env) as before:
        pretrained = post_image(before.url, SEVEN.read_bytes()).json()
        assert _metadata(before)["accuracy"] > 0.95
    shipped = (weights / "weights.json").read_text()

    data_dir = tmp_path / "my-digits"
    assert samples.write_folder(data_dir, per_class=8) == 80
    output = tmp_path / "train.json"
    trained = subprocess.run(
        [
            str(Path(sys.executable).parent / "deepaas-cli"),
            "--deepaas_method_output",
            str(output),
            "train",
            "--data_dir",
            str(data_dir),
            "--C",
            "0.3",
        ],
        env={**os.environ, **env, "DEEPAAS_V2_MODEL": "digits"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    report = json.loads(output.read_text())["result"]["output"]
    assert report["source"] == str(data_dir)
    assert (report["train_samples"], report["test_samples"]) == (64, 16)
    metrics = json.loads((weights / "metrics.json").read_text())
    assert metrics["C"] == 0.3 and metrics["accuracy"] == report["accuracy"]
    assert (weights / "weights.json").read_text() != shipped

    new = classifier.Classifier.from_json(json.loads((weights / "weights.json").read_text()))
    expected = new.probabilities(images.features_from_file(SEVEN))[0]
    with running("digits", tmp_path / "after.log", env) as after:
        answer = post_image(after.url, SEVEN.read_bytes()).json()
        assert _metadata(after)["accuracy"] == report["accuracy"]
    served = {p["label"]: p["probability"] for p in answer["probabilities"]}
    assert served == {i: round(float(p), 6) for i, p in enumerate(expected)}
    assert answer["probabilities"] != pretrained["probabilities"]


def test_cli_training_on_a_missing_directory_fails_with_the_path(tmp_path):
    require_deepaas()
    failed = subprocess.run(
        [str(Path(sys.executable).parent / "deepaas-cli"), "train", "--data_dir", "/nonexistent"],
        env={**os.environ, "DIGITS_MODEL_DIR": str(tmp_path), "DEEPAAS_V2_MODEL": "digits"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode != 0
    assert "data_dir /nonexistent is not a directory" in failed.stdout + failed.stderr
    assert not (tmp_path / "weights.json").exists()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_serve_with_cors_answers_preflight_and_cross_origin_post(tmp_path):
    require_deepaas()
    port = serve.free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "deepmarket", "module", "serve", "digits-classifier",
         "--port", str(port), "--cors-origin", PAGE_ORIGIN],
        cwd=REPO,
        env={**os.environ, "DIGITS_MODEL_DIR": str(tmp_path / "weights")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        serve.wait_ready(process, url, timeout=180)
        preflight = http.request(
            "OPTIONS",
            url + PREDICT,
            headers={
                "Origin": PAGE_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "accept",
            },
        )
        assert preflight.status == 204
        assert preflight.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert preflight.headers["Access-Control-Allow-Headers"] == "accept"

        body, kind = http.multipart({}, {"data": SEVEN})
        headers = {"Origin": PAGE_ORIGIN, "Content-Type": kind, "Accept": "application/json"}
        answer = http.request("POST", url + PREDICT, body=body, headers=headers)
        assert answer.status == 200, answer.text()
        assert answer.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
        assert answer.json()["label"] == 7

        foreign = http.request(
            "OPTIONS",
            url + PREDICT,
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert foreign.status == 403 and "Access-Control-Allow-Origin" not in foreign.headers
        backend = _children(process.pid)
        assert backend, "module serve should run deepaas-run as its child"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()
    for pid in backend:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        ), f"deepaas-run {pid} outlived module serve"


def test_serve_a_package_directory_runs_plain_deepaas_run(tmp_path):
    require_deepaas()
    port = serve.free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "deepmarket", "module", "serve",
         str(REPO / "examples" / "modules" / "digits"), "--port", str(port)],
        env={**os.environ, "DIGITS_MODEL_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        serve.wait_ready(process, url, timeout=180)
        body, kind = http.multipart({}, {"data": SEVEN})
        headers = {"Origin": PAGE_ORIGIN, "Content-Type": kind}
        answer = http.request("POST", url + PREDICT, body=body, headers=headers)
        assert answer.status == 200 and answer.json()["label"] == 7
        assert "Access-Control-Allow-Origin" not in answer.headers  # no proxy without origins
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert any(arg.endswith(b"deepaas-run") for arg in cmdline)  # exec'd in place
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_cli_predict_answers_like_the_server(tmp_path):
    require_deepaas()
    out = tmp_path / "answer.json"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "deepaas-cli"), "--deepaas_method_output", str(out),
         "predict", "--data", str(SEVEN)],
        env={**os.environ, "DIGITS_MODEL_DIR": str(tmp_path), "DEEPAAS_V2_MODEL": "digits"},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(out.read_text())["label"] == 7
    assert SEVEN.exists()  # predict deletes only its temporary copy
