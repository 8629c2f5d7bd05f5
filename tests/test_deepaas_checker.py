"""`deepmarket module check` against real deepaas-run servers: the example passes, and each
deliberately broken module fails with a reason that says what to fix.

Broken modules are registered without pip: a directory on PYTHONPATH holding the package and
a hand-written `*.dist-info` (METADATA + entry_points.txt) is an installed distribution as far
as entry-point discovery (and so DEEPaaS) is concerned.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from deepaas_servers import REPO, SEVEN, require_deepaas, running_many

from deepmarket.cli import main

pytestmark = pytest.mark.deepaas

PREAMBLE = """
from marshmallow import fields

META = {"name": "{name}", "author": "Tests", "license": "MIT", "description": "broken on purpose"}

def get_predict_args():
    return {"data": fields.Field(required=True, metadata={"type": "file", "location": "form"})}
"""

BROKEN = {
    "no_metadata": """
schema = {"label": fields.Int(required=True)}

def predict(**kwargs):
    return {"label": 1}
""",
    "bad_answer": """
schema = {"label": fields.Int(required=True)}

def get_metadata():
    return META

def predict(**kwargs):
    return {"label": "seven", "extra": True}
""",
    "crashing": """
def get_metadata():
    return META

def predict(**kwargs):
    raise RuntimeError("boom: the model file is missing")
""",
    "second": """
def get_metadata():
    return META

def predict(**kwargs):
    return {"label": 1}
""",
}


def install_fake(root: Path, name: str, body: str) -> Path:
    """A module package plus the dist-info that registers its deepaas.v2.model entry point."""
    package = root / f"fake_{name}"
    package.mkdir(parents=True)
    code = PREAMBLE.replace("{name}", name) + textwrap.dedent(body)
    (package / "__init__.py").write_text(code)
    info = root / f"fake_{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[deepaas.v2.model]\n{name} = fake_{name}\n")
    return root


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    require_deepaas()
    tmp = tmp_path_factory.mktemp("broken")
    specs = {"digits": ("digits", tmp / "digits.log", {"DIGITS_MODEL_DIR": str(tmp / "w")})}
    for name in ("no_metadata", "bad_answer", "crashing"):
        path = install_fake(tmp / name, name, BROKEN[name])
        specs[name] = (name, tmp / f"{name}.log", {"PYTHONPATH": str(path)})
    # No model name: DEEPaaS serves every installed model, here digits and this one.
    two = install_fake(tmp / "two", "second", BROKEN["second"])
    specs["two"] = (None, tmp / "two.log", {"PYTHONPATH": str(two)})
    with running_many(specs) as running:
        yield running


def check(capsys, *argv: str) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["module", "check", *argv, "--format", "json", "--root", str(REPO)])
    report = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in report["checks"]}


def test_the_example_module_passes_every_check_including_training(servers, capsys):
    code, checks = check(capsys, servers["digits"].url, "--module", "digits-classifier", "--train")
    assert code == 0, checks
    assert {name: c["status"] for name, c in checks.items()} == {
        "api-v2": "pass",
        "one-model": "pass",
        "metadata": "pass",
        "swagger": "pass",
        "response-schema": "pass",
        "predict": "pass",
        "bad-input": "pass",
        "train": "pass",
    }
    assert '"label": 7' in checks["predict"]["detail"]


def test_text_report_is_a_table_with_a_verdict(servers, capsys):
    url = servers["digits"].url
    code = main(["module", "check", url, "--sample", str(SEVEN), "--arg", "accept=image/png"])
    out = capsys.readouterr().out
    assert code == 0
    assert "predict          PASS    answered" in out and "of image/png" in out
    assert out.rstrip().endswith("PASSED: 7 of 7 checks")


@pytest.mark.parametrize(
    ("server", "reasons"),
    [
        ("no_metadata", {"metadata": "get_metadata() is missing or not implemented"}),
        (
            "bad_answer",
            {
                "predict": "does not match the module's declared schema",
                "bad-input": "got HTTP 500: predict should check its input",
            },
        ),
        (
            "crashing",
            {
                "predict": "failed with HTTP 500",
                "bad-input": "got HTTP 500: predict should check its input",
            },
        ),
        ("two", {"one-model": "serves 2 models (digits, second)"}),
    ],
)
def test_broken_modules_fail_with_the_reason(servers, capsys, server, reasons):
    code, checks = check(capsys, servers[server].url, "--sample", str(SEVEN))
    assert code == 1
    failed = {name for name, c in checks.items() if c["status"] == "fail"}
    assert failed == set(reasons), checks
    for name, reason in reasons.items():
        assert reason in checks[name]["detail"]


def test_a_sample_the_module_rejects_fails_predict_with_its_message(servers, capsys):
    code, checks = check(capsys, servers["digits"].url, "--sample", str(REPO / "pyproject.toml"))
    assert code == 1
    assert checks["predict"]["status"] == "fail"
    assert "HTTP 400" in checks["predict"]["detail"]
    assert "not an image Pillow can read" in checks["predict"]["detail"]
