"""`deepmarket module check` without false verdicts: a module shaped like the official AI4OS
demo (several file inputs, `accept` in the query, every argument type) passes; targets that
are not DEEPaaS servers get one line and exit 2; a training that outlives its time is
cancelled and named.

The official demo (github.com/ai4os-hub/ai4os-demo-app) is not on PyPI, so CI cannot install
it; tests/data/demo_like/ reproduces its interface (see its docstring) and is registered
through a dist-info on PYTHONPATH, as test_deepaas_checker.py does for its broken modules.
"""

from __future__ import annotations

import http.server as http_server
import json
import socket
import threading
from pathlib import Path

import pytest
from deepaas_servers import REPO, SEVEN, require_deepaas, running

from deepmarket.cli import main
from deepmarket.errors import UsageError
from deepmarket.modules import checker, conformance, http, serve, targets

DEMO = Path(__file__).with_name("data") / "demo_like"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    require_deepaas()
    tmp = tmp_path_factory.mktemp("demo")
    with running("demo_like", tmp / "demo.log", {"PYTHONPATH": str(DEMO)}) as server:
        yield server


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inputs")
    (tmp / "a.wav").write_bytes(b"RIFF" + bytes(200))
    (tmp / "v.mp4").write_bytes(bytes(300))
    return [
        f"--file=demo_image={SEVEN}",
        f"--file=demo_audio={tmp / 'a.wav'}",
        f"--file=demo_video={tmp / 'v.mp4'}",
    ]


def check(capsys, *argv: str) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["module", "check", *argv, "--format", "json", "--root", str(REPO)])
    report = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in report["checks"]}


@pytest.mark.deepaas
@pytest.mark.parametrize(
    ("accept", "answered"),
    [
        ("application/json", 'answered {"accept": "application/json"'),
        ("application/zip", "bytes of application/zip"),
        ("image/*", "bytes of image/*"),
    ],
)
def test_the_demo_shaped_module_passes_every_check(demo, inputs, capsys, accept, answered):
    code, checks = check(
        capsys,
        demo.url,
        *inputs,
        f"--arg=accept={accept}",
        "--arg=demo_int=7",
        "--arg=demo_str_choice=choice1",
        "--train",
        "--train-arg=epoch_num=1",
    )
    assert code == 0, checks
    statuses = {name: c["status"] for name, c in checks.items()}
    assert statuses == {
        "api-v2": "pass",
        "one-model": "pass",
        "metadata": "pass",
        "swagger": "pass",
        "response-schema": "pass",
        "predict": "pass",
        # the demo echoes whatever it gets: accepting an empty upload is worth a warning
        "bad-input": "warn",
        "train": "pass",
    }
    assert answered in checks["predict"]["detail"]
    assert "an empty file in 'demo_image' was accepted (HTTP 200)" in checks["bad-input"]["detail"]


@pytest.mark.deepaas
def test_arguments_arrive_where_deepaas_reads_them(demo, inputs):
    spec_check, spec = conformance.judge_spec(
        http.request("GET", demo.url + "/swagger.json"), "demo_like"
    )
    assert spec_check.status == "pass" and spec.location("demo_int") == "query"
    files = {a.split("=")[1]: Path(a.split("=", 2)[2]) for a in inputs}
    sample = conformance.Sample({"demo_int": "7", "demo_str_choice": "choice1"}, files, "t")
    plan = conformance.plan_predict(spec, sample)
    answer = checker._send(demo.url, spec, plan, 60)
    assert answer.status == 200, answer.text()
    echoed = answer.json()
    assert echoed["demo_int"] == 7 and echoed["demo_str_choice"] == "choice1"


def usage_line(capsys, *argv: str) -> str:
    """`module check` refused the command itself: exit 2, one line, no report."""
    code = main(["module", "check", *argv, "--format", "json", "--root", str(REPO)])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == "" and "Traceback" not in captured.err
    lines = [x for x in captured.err.splitlines() if not x.startswith("  ")]
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.deepaas
def test_flags_that_do_not_fit_the_api_are_the_callers_to_fix_not_a_verdict(demo, inputs, capsys):
    # Found on the real ai4os-demo-app: each of these used to FAIL predict/train (exit 1), a
    # false verdict on a conformant module. They are mistakes in the command: exit 2.
    line = usage_line(capsys, demo.url, f"--file=demo_image={SEVEN}")
    assert line.endswith("the --file/--arg sample lacks required demo_audio, demo_video")
    line = usage_line(capsys, demo.url, "--sample", str(SEVEN))
    assert "predict declares 3 file arguments (demo_image, demo_audio, demo_video); name one" in (
        line
    )
    line = usage_line(capsys, demo.url, *inputs, "--arg=accept=application/pdf")
    assert (  # DEEPaaS adds */* to the enum it publishes
        "gives accept=application/pdf, but predict accepts only application/json, "
        "application/zip, image/*, */*"
    ) in line
    line = usage_line(capsys, demo.url, *inputs, "--arg=demo_int_range=500")
    assert line.endswith("gives demo_int_range=500, but predict declares it between 1 and 100")
    line = usage_line(capsys, demo.url, *inputs, "--train", "--train-arg=epochs=1")
    assert line.endswith("--train-arg epochs: train does not declare it (declared: epoch_num)")


def check_entry(url: str, root: Path, capsys) -> tuple[int, dict]:
    """`module check URL --module demo-like` on the catalog at `root`: (exit, checks by name)."""
    code = main(["module", "check", url, "--module", "demo-like", "--root", str(root),
                 "--format", "json"])  # fmt: skip
    return code, {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


@pytest.mark.deepaas
def test_a_catalog_sample_that_does_not_fit_is_a_verdict_on_the_entry(demo, tmp_path, capsys):
    entry = tmp_path / "catalog" / "demo-like"
    entry.mkdir(parents=True)
    (entry / "image.png").write_bytes(SEVEN.read_bytes())
    (entry / "module.yml").write_text(
        "runtime:\n  model: demo_like\n  check:\n    predict:\n"
        "      files: {demo_image: image.png}\n"
    )
    code, checks = check_entry(demo.url, tmp_path, capsys)
    assert code == 1
    assert checks["predict"]["detail"].endswith(
        "runtime.check.predict lacks required demo_audio, demo_video"
    )
    assert checks["bad-input"]["status"] == "skip"


@pytest.mark.deepaas
def test_a_late_training_is_cancelled_and_named(demo, inputs, capsys):
    code, checks = check(
        capsys, demo.url, *inputs, "--train", "--train-arg=epoch_num=30", "--train-timeout=1"
    )
    assert code == 1
    detail = checks["train"]["detail"]
    assert detail.startswith("training ") and "was still running after 1s; cancelled it" in detail
    uuid = detail.split()[1]
    listed = http.request("GET", f"{demo.url}/v2/models/demo_like/train/").json()
    assert all(t["uuid"] != uuid or t["status"] != "running" for t in listed)


@pytest.mark.deepaas
def test_the_example_module_still_passes_with_accept_where_its_api_declares_it(capsys):
    require_deepaas()  # the digits module declares accept too: it must keep passing
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env = {"DIGITS_MODEL_DIR": str(Path(tmp) / "w")}
        with running("digits", Path(tmp) / "d.log", env) as server:
            code, checks = check(
                capsys, server.url, "--sample", str(SEVEN), "--arg=accept=image/png"
            )
    assert code == 0, checks
    assert checks["predict"]["detail"].endswith("bytes of image/png")
    assert checks["bad-input"]["status"] == "pass"


# -- targets that are not DEEPaaS servers: one line, exit 2 --------------------------------


class _NotFound(http_server.BaseHTTPRequestHandler):
    def do_GET(self):  # an ordinary web server's HTML 404 page
        body = b"<html><body><h1>404 Not Found</h1></body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def html_server():
    server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def one_line_exit_2(capsys, url: str) -> str:
    code = main(["module", "check", url])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = [x for x in captured.err.splitlines() if not x.startswith("  ")]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_a_web_page_that_is_not_deepaas_is_exit_2(capsys, html_server):
    line = one_line_exit_2(capsys, html_server)
    assert f"{html_server} is not a DEEPaaS server: GET /v2/ answered HTTP 404 (text/html)" in line


def test_unreachable_and_malformed_targets_are_exit_2(capsys):
    port = serve.free_port()
    assert "cannot reach" in one_line_exit_2(capsys, f"http://127.0.0.1:{port}")
    assert "expected an http:// or https:// URL" in one_line_exit_2(capsys, "ftp://host/x")
    assert "expected an http:// or https:// URL" in one_line_exit_2(capsys, "localhost:5000")
    assert "not a valid URL" in one_line_exit_2(capsys, "http://[::1")
    assert "not a valid URL" in one_line_exit_2(capsys, "http://host:99999")
    assert "without a query or fragment" in one_line_exit_2(capsys, "http://h:5000/?x=1")
    assert "without a query or fragment" in one_line_exit_2(capsys, "http://h:5000/#top")
    hint = one_line_exit_2(capsys, "http://h:5000/digits/v2/")
    assert hint.endswith("without /v2/: http://h:5000/digits")


def test_base_urls_keep_their_path_prefix():
    assert targets.check_base_url("http://h:5000/digits-classifier/") == (
        "http://h:5000/digits-classifier"
    )
    with pytest.raises(UsageError, match="without /v2/"):
        targets.check_base_url("https://h/x/v2/models/digits/predict/")


def test_a_server_that_never_answers_is_named_with_the_time_waited():
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(checker.NotADeepaasServer) as caught:
            checker.probe(url, timeout=1)
    assert str(caught.value) == (
        f"cannot reach {url}: no answer within 1s (timed out); is the server running at that URL?"
    )
    assert caught.value.exit_code == 2


@pytest.mark.deepaas
def test_a_catalog_sample_for_several_file_fields(demo, tmp_path, capsys):
    entry = tmp_path / "catalog" / "demo-like"
    (entry / "samples").mkdir(parents=True)
    (entry / "samples" / "image.png").write_bytes(SEVEN.read_bytes())
    (entry / "samples" / "audio.wav").write_bytes(b"RIFF" + bytes(100))
    (entry / "samples" / "video.mp4").write_bytes(bytes(100))
    (entry / "module.yml").write_text(
        "runtime:\n  model: demo_like\n  check:\n    predict:\n"
        "      args: {accept: application/zip, demo_float: '0.5'}\n"
        "      files: {demo_image: samples/image.png, demo_audio: samples/audio.wav,"
        " demo_video: samples/video.mp4}\n"
    )
    code, checks = check_entry(demo.url, tmp_path, capsys)
    assert code == 0, checks
    assert checks["predict"]["detail"].endswith("bytes of application/zip")
