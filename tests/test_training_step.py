"""The pod's steps for real, as processes: a real WebDAV server (wsgidav), real rclone, real
`deepaas-cli train` on the digits module, run through `step.py` exactly as the Job runs it
(`python -I -S`: the module's image has no deepmarket, so the step must need the stdlib only).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from deepaas_servers import require_deepaas
from webdav_server import PASSWORD, USER, WebDav, obscure, require_tools, webdav

from deepmarket.controller.training import step

STEP = Path(step.__file__)
pytestmark = pytest.mark.deepaas


@pytest.fixture
def dav(tmp_path: Path):
    require_tools()
    with webdav(tmp_path) as server:
        yield server


def digits_data(root: Path, per_class: int = 6, sevens_as: int | None = None) -> None:
    from deepmarket_digits import samples

    samples.write_folder(root, per_class)
    if sevens_as is not None:  # relabel: every 7 becomes a `sevens_as`
        for image in (root / "7").iterdir():
            image.rename(root / str(sevens_as) / f"seven-{image.name}")
        (root / "7").rmdir()


def deepaas_cli() -> str:
    beside = Path(sys.executable).parent / "deepaas-cli"
    return str(beside) if beside.exists() else (shutil.which("deepaas-cli") or "deepaas-cli")


def step_env(
    dav: WebDav, tmp: Path, *, password: str = PASSWORD, plain: bool = False, **extra: str
) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "DEEPMARKET_RUN": "run-1",
        "DEEPMARKET_INPUT_URL": dav.url("datasets/digits"),
        "DEEPMARKET_OUTPUT_URL": dav.url("models"),
        "DEEPMARKET_DATA_DIR": str(tmp / "data"),
        "DEEPMARKET_MODEL_DIR": str(tmp / "weights"),
        "DIGITS_MODEL_DIR": str(tmp / "weights"),  # what the digits image sets
        "DEEPMARKET_TRAIN_ARGS": json.dumps({"data_dir": "$(DATA_DIR)", "max_iter": 200}),
        "DEEPMARKET_DEEPAAS_CLI": deepaas_cli(),
        "DEEPMARKET_TERMINATION_LOG": str(tmp / "termination-log"),
    }
    for side in ("IN", "OUT"):
        env[f"RCLONE_CONFIG_{side}_TYPE"] = "webdav"
        env[f"RCLONE_CONFIG_{side}_VENDOR"] = "nextcloud"
        env[f"RCLONE_CONFIG_{side}_USER"] = USER
        if plain:
            env[f"DEEPMARKET_{side}_PASSWORD"] = password
        else:
            env[f"RCLONE_CONFIG_{side}_PASS"] = obscure(password)
    env["RCLONE_CONFIG_IN_URL"] = env["DEEPMARKET_INPUT_URL"]
    env["RCLONE_CONFIG_OUT_URL"] = env["DEEPMARKET_OUTPUT_URL"]
    env.update(extra)
    return env


def run_step(env: dict[str, str], tmp: Path) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(STEP)],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp,
    )  # fmt: skip
    outcome = json.loads((tmp / "termination-log").read_text())
    logs = done.stdout + done.stderr
    return done.returncode, outcome, logs


def assert_no_credentials(env: dict[str, str], *texts: str) -> None:
    secrets = [PASSWORD] + [v for k, v in env.items() if k.endswith("_PASS")]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_trains_on_webdav_data_and_uploads_with_checksums(dav: WebDav, tmp_path: Path) -> None:
    require_deepaas()
    digits_data(dav.root / "datasets" / "digits")
    env = step_env(dav, tmp_path, plain=True)  # a plain password, obscured by the step
    code, outcome, logs = run_step(env, tmp_path)
    assert code == 0, logs
    assert outcome["ok"] is True
    folder = dav.root / "models" / "run-1"
    assert outcome["output"]["url"] == dav.url("models") + "/run-1/"
    listed = {f["path"]: f for f in outcome["output"]["files"]}
    assert {"weights.json", "metrics.json"} <= set(listed)
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(listed)
    for line in sums:
        digest, name = line.split("  ", 1)
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest == listed[name]["sha256"]
        assert len(data) == listed[name]["size"]
    record = json.loads((folder / "trainingrun.json").read_text())
    assert record["args"]["data_dir"] == "$(DATA_DIR)"
    assert record["metrics"]["train_samples"] > 0
    # trained on the 60 WebDAV images, not on scikit-learn's bundled 1,797
    assert outcome["metrics"]["train_samples"] + outcome["metrics"]["test_samples"] == 60
    assert "deepmarket-progress" in logs and '"phase": "Uploading"' in logs
    # the digits module's own progress file (store.report_progress) reached the step's reports
    reports = [json.loads(ln.split(" ", 1)[1]) for ln in logs.splitlines()
               if ln.startswith("deepmarket-progress ")]  # fmt: skip
    module_said = [r for r in reports if r.get("phase") == "Training" and "metrics" in r]
    assert module_said[-1]["percent"] == 100
    assert module_said[-1]["metrics"]["accuracy"] == outcome["metrics"]["accuracy"]
    assert_no_credentials(env, logs, json.dumps(outcome), dav.log.read_text())


def test_training_that_raises_fails_with_the_error_lines(dav: WebDav, tmp_path: Path) -> None:
    require_deepaas()
    data = dav.root / "datasets" / "digits"
    digits_data(data, per_class=2)
    (data / "cats").mkdir()  # the digits module refuses sub-directories not named 0 ... 9
    (data / "cats" / "a.png").write_bytes((data / "1" / "0.png").read_bytes())
    env = step_env(dav, tmp_path)
    code, outcome, logs = run_step(env, tmp_path)
    assert code == step.EXIT_TRAINING, logs
    assert outcome["reason"] == "TrainingFailed"
    assert "sub-directories must be named 0 ... 9" in outcome["message"]
    assert "ValueError" in outcome["message"]
    assert not (dav.root / "models").exists()  # nothing uploaded
    assert_no_credentials(env, logs, json.dumps(outcome))


def test_wrong_credentials_say_401_and_never_train(dav: WebDav, tmp_path: Path) -> None:
    digits_data(dav.root / "datasets" / "digits", per_class=1)
    env = step_env(dav, tmp_path, password="expired-app-password")
    code, outcome, logs = run_step(env, tmp_path)
    assert code == step.EXIT_DATA, logs
    assert outcome["reason"] == "DataUnavailable"
    assert dav.url("datasets/digits") in outcome["message"]
    assert "HTTP 401" in outcome["message"] and "credentials" in outcome["message"]
    assert "training:" not in logs
    assert_no_credentials(env, logs, json.dumps(outcome))
    assert "expired-app-password" not in logs


def test_missing_folder_and_empty_folder(dav: WebDav, tmp_path: Path) -> None:
    env = step_env(dav, tmp_path)
    code, outcome, logs = run_step(env, tmp_path)
    assert code == step.EXIT_DATA, logs
    assert "does not exist" in outcome["message"], outcome
    assert dav.url("datasets/digits") in outcome["message"]
    (dav.root / "datasets" / "digits").mkdir(parents=True)
    code, outcome, logs = run_step(env, tmp_path)
    assert code == step.EXIT_DATA
    assert "empty" in outcome["message"]


def test_upload_that_fails_says_so(dav: WebDav, tmp_path: Path) -> None:
    require_deepaas()
    digits_data(dav.root / "datasets" / "digits", per_class=2)
    env = step_env(dav, tmp_path)
    env["RCLONE_CONFIG_OUT_PASS"] = obscure("not-the-password")  # output refuses the writes
    code, outcome, logs = run_step(env, tmp_path)
    assert code == step.EXIT_UPLOAD, logs
    assert outcome["reason"] == "UploadFailed"
    assert dav.url("models") in outcome["message"] and "401" in outcome["message"]
    assert_no_credentials(env, logs, json.dumps(outcome))


FAKE_CLI = """#!/bin/sh
# stands in for deepaas-cli's two misleading exits: {mode}
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--deepaas_method_output" ]; then out="$2"; shift; fi
  shift
done
{body}
"""


def fake_cli(tmp: Path, mode: str, body: str) -> str:
    path = tmp / f"fake-cli-{mode}"
    path.write_text(FAKE_CLI.format(mode=mode, body=body))
    path.chmod(0o755)
    return str(path)


def test_success_is_judged_by_evidence_not_exit_status(dav: WebDav, tmp_path: Path) -> None:
    digits_data(dav.root / "datasets" / "digits", per_class=1)
    # exit 0, but no result file and no model: not a success
    silent = fake_cli(tmp_path, "silent", "exit 0")
    env = step_env(dav, tmp_path, DEEPMARKET_DEEPAAS_CLI=silent)
    code, outcome, _ = run_step(env, tmp_path)
    assert code == step.EXIT_TRAINING and "without a result" in outcome["message"]
    # a result saying "done" but no model file written: not a success either
    empty = fake_cli(tmp_path, "empty", 'echo \'{"status": "done", "result": {}}\' > "$out"')
    env = step_env(dav, tmp_path, DEEPMARKET_DEEPAAS_CLI=empty)
    code, outcome, _ = run_step(env, tmp_path)
    assert code == step.EXIT_TRAINING and "wrote no file" in outcome["message"]
    # exit 1 (the console script returning main()'s JSON) with result and model: a success
    wm = tmp_path / "weights"
    body = (
        f"mkdir -p {wm}; echo 1 > {wm}/model.bin\n"
        'echo \'{"status": "done", "result": {"output": {"accuracy": 0.5}}}\' > "$out"\nexit 1'
    )
    env = step_env(dav, tmp_path, DEEPMARKET_DEEPAAS_CLI=fake_cli(tmp_path, "lying", body))
    code, outcome, logs = run_step(env, tmp_path)
    assert code == 0, logs
    assert outcome["metrics"] == {"accuracy": 0.5}
    assert (dav.root / "models" / "run-1" / "model.bin").read_text() == "1\n"


def test_progress_file_is_forwarded(dav: WebDav, tmp_path: Path) -> None:
    digits_data(dav.root / "datasets" / "digits", per_class=1)
    wm = tmp_path / "weights"
    body = (
        'echo \'{"percent": 40, "epoch": 2, "epochs": 5, "etaSeconds": 9, '
        '"metrics": {"loss": 0.25}}\' > "$DEEPMARKET_PROGRESS_FILE"\nsleep 2.5\n'
        f'mkdir -p {wm}; echo 1 > {wm}/m\necho \'{{"status": "done"}}\' > "$out"'
    )
    env = step_env(dav, tmp_path, DEEPMARKET_DEEPAAS_CLI=fake_cli(tmp_path, "progress", body))
    code, _, logs = run_step(env, tmp_path)
    assert code == 0, logs
    lines = [json.loads(ln.split(" ", 1)[1]) for ln in logs.splitlines()
             if ln.startswith("deepmarket-progress ")]  # fmt: skip
    training = [p for p in lines if p.get("epoch") == 2]
    assert training and training[0]["percent"] == 40 and training[0]["metrics"] == {"loss": 0.25}
    # the training process saw no credential
    assert "RCLONE_CONFIG" not in json.dumps(step.user_env(env))


def test_termination_message_fits_and_drops_files_first() -> None:
    files = [{"path": f"f{i:04}.bin", "size": i, "sha256": "a" * 64} for i in range(200)]
    text = step.termination_message({"ok": True, "output": {"url": "u", "files": files}})
    assert len(text.encode()) <= step.TERMINATION_LIMIT
    data = json.loads(text)
    assert data["output"]["truncated"] is True and 0 < len(data["output"]["files"]) < 200


def test_train_argv_substitutes_dirs_and_refuses_odd_names() -> None:
    argv = step.train_argv(
        {"data_dir": "$(DATA_DIR)/x", "flag": True, "layers": [1, 2]},
        {"DATA_DIR": "/srv/data", "MODEL_DIR": "/m"},
    )
    assert argv == ["--data_dir", "/srv/data/x", "--flag", "true", "--layers", "[1, 2]"]
    with pytest.raises(step.StepFailed):
        step.train_argv({"a b": 1}, {})


def test_trained_weights_served_by_a_deepmodule_predict_differently(
    dav: WebDav, tmp_path: Path
) -> None:
    """Train on data where every 7 is labelled 1, upload, fetch the run's output folder with
    the DeepModule builder's own init-container command, serve it: the held-out seven that
    the stock weights call 7 is now called 1."""
    require_deepaas()
    from deepaas_servers import SEVEN, running_many

    from deepmarket.controller.deepmodule.builders import pod_template
    from deepmarket.controller.deepmodule.resolve import resolve as resolve_dm
    from deepmarket.controller.options import Options
    from deepmarket.modules import http

    digits_data(dav.root / "datasets" / "digits", per_class=12, sevens_as=1)
    env = step_env(dav, tmp_path)
    code, outcome, logs = run_step(env, tmp_path)
    assert code == 0, logs
    # The TrainingRun as the operator records it, and the DeepModule `promote` creates.
    run = {
        "spec": {"data": {"output": {"url": dav.url("models"), "secretRef": "webdav"}}},
        "status": {"phase": "Succeeded", "output": outcome["output"]},
    }
    rt = resolve_dm(
        {"image": "x/digits:1", "weights": {"trainingRun": "run-1"}},
        None,
        training_runs={"run-1": run},
    )
    init = pod_template("digits", rt, Options())["spec"]["initContainers"][0]
    served = tmp_path / "served-weights"
    secret = {"RCLONE_WEBDAV_USER": USER, "RCLONE_WEBDAV_PASS": obscure(PASSWORD)}
    args = [str(served) if a == "/weights" else a for a in init["args"]]
    init_env = {e["name"]: e["value"] for e in init.get("env", [])}
    fetched = subprocess.run(
        ["rclone", *args], env={**os.environ, **init_env, **secret},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    assert (served / "weights.json").exists() and (served / "SHA256SUMS").exists()
    specs = {
        "stock": ("digits", tmp_path / "stock.log", {"DIGITS_MODEL_DIR": str(tmp_path / "stock")}),
        "trained": ("digits", tmp_path / "trained.log", {"DIGITS_MODEL_DIR": str(served)}),
    }
    labels = {}
    with running_many(specs) as servers:
        for key, server in servers.items():
            body, kind = http.multipart({}, {"data": SEVEN})
            answer = http.request(
                "POST",
                server.url + "/v2/models/digits/predict/",
                body=body,
                headers={"Content-Type": kind, "Accept": "application/json"},
            )
            assert answer.status == 200, answer.text()
            labels[key] = answer.json()["label"]
    assert labels == {"stock": 7, "trained": 1}
