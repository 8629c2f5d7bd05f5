"""The conformance judgements of `deepmarket module check` over recorded answers (no server)."""

import json
from pathlib import Path

import pytest

from deepmarket.modules import conformance as c
from deepmarket.modules import report
from deepmarket.modules.http import Answer

JSON = {"Content-Type": "application/json"}
SCHEMA = {
    "$ref": "#/definitions/ModelPredictionResponse",
    "definitions": {
        "ModelPredictionResponse": {
            "type": "object",
            "properties": {"label": {"type": "integer"}, "scores": {"type": "array"}},
            "required": ["label"],
        }
    },
}


def answer(status: int, data, headers=JSON) -> Answer:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return Answer(status, dict(headers), body)


def model(name: str, **meta) -> dict:
    return {
        "id": name,
        "name": name,
        "links": [{"rel": "self", "href": f"/v2/models/{name}"}],
    } | meta


def spec(parameters=None, schema=SCHEMA, generic=False) -> c.PredictSpec:
    params = parameters or (
        {"in": "formData", "name": "data", "type": "file", "required": True},
        {"in": "header", "name": "accept", "type": "string", "default": "application/json"},
    )
    return c.PredictSpec("/v2/models/m/predict/", tuple(params), schema, generic)


def test_fallback_test_model_is_named_as_such():
    check, found = c.judge_models(answer(200, {"models": [model("deepaas-test")]}))
    assert (check.status, found) == ("fail", None)
    assert "built-in test model 'deepaas-test'" in check.detail


def test_catalog_model_name_must_match_the_served_one():
    check, _ = c.judge_models(answer(200, {"models": [model("digits")]}), expected="plants")
    assert check.status == "fail"
    assert "runtime.model is 'plants'" in check.detail


def test_route_name_survives_metadata_that_overrides_id():
    placeholder = model("digits") | {"id": "0", "name": "Digits"}
    assert c.route_name(placeholder) == "digits"


def test_metadata_needs_author_and_licence():
    check = c.judge_metadata(model("m", description="x", author=" "))
    assert check.status == "fail"
    assert "lacks name" not in check.detail and "author, license" in check.detail


def test_spec_without_predict_arguments_fails():
    swagger = {"paths": {"/v2/models/m/predict/": {"post": {"parameters": []}}}}
    check, found = c.judge_spec(answer(200, swagger), "m")
    assert (check.status, found) == ("fail", None)
    assert "declares no arguments" in check.detail


def test_generic_response_schema_is_a_warning():
    assert c.judge_declared_schema(spec(generic=True)).status == "warn"
    assert c.judge_declared_schema(spec()).detail == "declares label, scores"


def test_sample_arguments_go_where_the_spec_declares_them(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"png")
    plan = c.plan_predict(spec(), c.Sample({"accept": "image/png"}, {"": image}, "test"))
    assert plan == c.PredictRequest({}, {"data": image}, {"Accept": "image/png"}, {}, "image/png")


def test_sample_with_undeclared_or_missing_arguments_fails():
    unknown = c.plan_predict(spec(), c.Sample({"colour": "red"}, {}, "module.yml"))
    assert "module.yml gives colour, which predict does not declare" in unknown.detail
    missing = c.plan_predict(spec(), c.Sample({}, {}, "module.yml"))
    assert missing.detail == "module.yml lacks required data"
    two_files = spec(
        [{"in": "formData", "name": n, "type": "file"} for n in ("a", "b")],
    )
    unnamed = c.plan_predict(two_files, c.Sample({}, {"": Path("x")}, "--sample"))
    assert "declares 2 file arguments (a, b); name one with --field" in unnamed.detail


def test_a_sample_value_the_swagger_rules_out_is_named_before_sending():
    accept = {"in": "query", "name": "accept", "type": "string", "enum": ["a/b", "c/d"]}
    declared = spec([accept])
    wrong = c.plan_predict(declared, c.Sample({"accept": "x/y"}, {}, "--arg"))
    assert wrong.detail == "--arg gives accept=x/y, but predict accepts only a/b, c/d"
    assert isinstance(
        c.plan_predict(declared, c.Sample({"accept": "c/d"}, {}, "t")), c.PredictRequest
    )
    ranged = spec([{"in": "query", "name": "n", "type": "integer", "minimum": 1, "maximum": 100}])
    high = c.plan_predict(ranged, c.Sample({"n": "500"}, {}, "--arg"))
    assert high.detail == "--arg gives n=500, but predict declares it between 1 and 100"
    word = c.plan_predict(ranged, c.Sample({"n": "ten"}, {}, "--arg"))
    assert word.detail == "--arg gives n=ten, but predict declares it an integer"
    assert isinstance(c.plan_predict(ranged, c.Sample({"n": "100"}, {}, "t")), c.PredictRequest)


def test_predict_answer_is_validated_against_the_declared_schema():
    ok = c.judge_predict(answer(200, {"label": 7, "scores": []}), spec(), "application/json")
    assert ok.status == "pass"
    bad = c.judge_predict(answer(200, {"label": "seven"}), spec(), "")
    assert bad.status == "fail"
    assert "at label: 'seven' is not of type 'integer'" in bad.detail


def test_predict_failures_are_told_apart():
    rejected = answer(500, b"500: ERROR validating model response, check server logs.", {})
    assert (
        "does not match the module's declared schema"
        in c.judge_predict(rejected, spec(), "").detail
    )
    crashed = c.judge_predict(answer(500, b"500 Internal Server Error", {}), spec(), "")
    assert "the module raised on a known-good input" in crashed.detail
    png = c.judge_predict(answer(200, b"{}", JSON), spec(), "image/png")
    assert png.detail == "asked for image/png but got application/json"
    refused = c.judge_predict(Answer(0, error="URLError: refused"), spec(), "")
    assert "no answer (URLError: refused)" in refused.detail


def test_training_record_outcomes():
    assert c.judge_train_record({"status": "done", "result": {"output": 1}}, False).status == "pass"
    failed = c.judge_train_record({"status": "error", "message": "no data"}, False)
    assert failed.detail == "training failed: no data"
    late = c.judge_train_record(
        {"status": "running"}, True, uuid="u1", waited=2, cancel=answer(200, {}), after="gone"
    )
    assert late.detail.startswith("training u1 was still running after 2s; cancelled it")
    stuck = c.judge_train_record(
        {"status": "running"},
        True,
        uuid="u2",
        waited=5,
        cancel=answer(500, b"boom", {}),
        after="running",
    )
    assert "cancelling it failed (DELETE answered HTTP 500" in stuck.detail


def test_report_verdicts():
    checks = [c.Check("api-v2", "pass", "ok"), c.Check("predict", "fail", "boom")]
    text = report.as_text("http://x", checks)
    assert text.splitlines()[-1] == "FAILED: 1 of 2 checks (predict)"
    assert json.loads(report.as_json("http://x", checks))["passed"] is False


def test_bad_input_must_be_refused_with_a_4xx():
    what = "an empty file in 'data'"
    assert c.judge_bad_input(answer(422, {"data": ["empty"]}), what, "data").status == "pass"
    crashed = c.judge_bad_input(answer(500, b"500 Internal Server Error", {}), what, "data")
    assert crashed.status == "fail"
    assert "an empty file in 'data' got HTTP 500" in crashed.detail
    garbage = c.judge_bad_input(answer(200, {"label": 1}), what, "data")
    assert garbage.status == "warn"
    assert "answers garbage input as if it were valid" in garbage.detail
    # a 4xx about other inputs says the sample is incomplete, not that the check passed
    other = c.judge_bad_input(answer(422, {"audio": ["Missing data"]}), what, "data")
    assert other.status == "warn" and "blames audio" in other.detail


def test_arguments_go_to_query_form_or_header_as_declared_and_accept_is_honoured(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"png")
    params = (
        {"in": "formData", "name": "image", "type": "file", "required": True},
        {"in": "formData", "name": "audio", "type": "file", "required": True},
        {"in": "query", "name": "threshold", "type": "number"},
        {"in": "formData", "name": "note", "type": "string"},
        {"in": "query", "name": "accept", "type": "string", "enum": ["application/zip"]},
    )
    sample = c.Sample(
        {"threshold": "0.5", "note": "n", "accept": "application/zip"},
        {"image": image, "audio": image},
        "test",
    )
    plan = c.plan_predict(spec(params), sample)
    assert plan == c.PredictRequest(
        {"note": "n"},
        {"image": image, "audio": image},
        {},
        {"threshold": "0.5", "accept": "application/zip"},
        "application/zip",
    )
    spoiled, what = c.plan_bad_input(spec(params), plan)
    assert what == "an empty file in 'image'"
    assert spoiled.files["image"] == ("empty.bin", b"") and spoiled.files["audio"] == image
    assert spoiled.query == plan.query  # every other input stays valid
    # no accept argument declared: it travels as the HTTP header
    plain = c.plan_predict(spec(params[:2]), c.Sample({}, {"image": image, "audio": image}, "t"))
    assert plain.headers == {} and plain.accept == ""
    numbers = ({"in": "query", "name": "n", "type": "integer", "required": True},)
    good = c.plan_predict(spec(numbers), c.Sample({"n": "3"}, {}, "t"))
    bad, what = c.plan_bad_input(spec(numbers), good)
    assert bad.query == {"n": "not-a-number"} and "'n'" in what


def test_answers_are_judged_against_the_type_asked_for():
    assert c.media_matches("image/*", "image/png") and c.media_matches("image/*", "image/*")
    assert not c.media_matches("image/*", "application/json")
    assert not c.media_matches("application/zip", "")
    png = b"\x89PNG\r\n\x1a\n...."
    zipped = b"PK\x03\x04...."
    asked_zip = c.judge_predict(
        answer(200, zipped, {"Content-Type": "application/zip"}), spec(), "application/zip"
    )
    assert asked_zip.status == "pass"
    fake_zip = c.judge_predict(
        answer(200, b"{}", {"Content-Type": "application/zip"}), spec(), "application/zip"
    )
    assert fake_zip.status == "fail" and "does not start like a application/zip" in fake_zip.detail
    wildcard = c.judge_predict(answer(200, png, {"Content-Type": "image/*"}), spec(), "image/*")
    assert wildcard.status == "pass"
    wrong = c.judge_predict(answer(200, b"{}", JSON), spec(), "image/*")
    assert wrong.status == "fail" and "asked for image/* but got application/json" in wrong.detail


def test_train_args_are_checked_against_the_swagger():
    declared = c.PredictSpec("/p", (), None, False, (), ({"name": "epoch_num", "in": "query"},))
    assert c.judge_train_args(declared, {"epoch_num": "1"}) is None
    wrong = c.judge_train_args(declared, {"epochs": "1"})
    assert wrong.status == "fail"
    assert wrong.detail == "--train-arg epochs: train does not declare it (declared: epoch_num)"
    none = c.PredictSpec("/p", (), None, False)
    assert "declares no POST train/" in c.judge_train_args(none, {"x": "1"}).detail


@pytest.mark.parametrize(
    "paths",
    [
        {"/v2/models/m/predict/": []},
        {"/v2/models/m/predict/": {"post": "x"}},
        {"/v2/models/m/predict/": {"post": {"parameters": {"a": 1}, "responses": []}}},
        {"/v2/models/m/predict/": {"post": {"parameters": [{"in": "query"}, "x"]}}},
    ],
)
def test_odd_swagger_documents_are_judged_not_crashed_on(paths):
    check, found = c.judge_spec(answer(200, {"paths": paths}), "m")
    assert check.status == "fail" and found is None
