"""`deepmarket module check`: call a running DEEPaaS server and judge each answer.

The judgements live in `conformance`; this module only sends the requests, in order, and
skips what cannot be checked once an earlier check failed.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

from deepmarket.errors import UsageError
from deepmarket.modules import conformance as c
from deepmarket.modules import http, targets

TRAIN_POLL_SECONDS = 0.5
PREDICT_TIMEOUT = 300.0


def sample_from_catalog(root: Path, module_id: str) -> tuple[c.Sample | None, str]:
    """The entry's `runtime.check.predict` sample (files resolved in its directory) and
    the model name it declares."""
    model = targets.model_in_catalog(root, module_id)
    data, folder = targets.read_entry(root, module_id)
    runtime = data.get("runtime") if isinstance(data.get("runtime"), dict) else {}
    check = runtime.get("check") if isinstance(runtime.get("check"), dict) else {}
    predict = check.get("predict")
    if not isinstance(predict, dict):
        return None, model
    raw_files = predict.get("files") if isinstance(predict.get("files"), dict) else {}
    raw_args = predict.get("args") if isinstance(predict.get("args"), dict) else {}
    files = {str(k): folder / str(v) for k, v in raw_files.items()}
    args = {str(k): str(v) for k, v in raw_args.items()}
    where = f"{folder / 'module.yml'} runtime.check.predict"
    return c.Sample(args, files, where, catalog=True), model


def sample_from_flags(
    path: Path | None,
    field: str | None,
    args: Mapping[str, str],
    files: Mapping[str, Path] | None = None,
) -> c.Sample:
    """A sample from --sample FILE [--field NAME], repeatable --file NAME=PATH and --arg."""
    named = dict(files or {})
    for name, file in named.items():
        if not file.is_file():
            raise UsageError(f"--file {name}={file}: no such file")
    if path is not None:
        if not path.is_file():
            raise UsageError(f"--sample {path}: no such file")
        # An unnamed field ("") is bound to predict's only file argument once the spec is known.
        named[field or ""] = path
    origin = "--sample" if path is not None and not files else "the --file/--arg sample"
    return c.Sample(dict(args), named, origin)


def _skip(name: str, why: str) -> c.Check:
    return c.Check(name, "skip", why)


class NotADeepaasServer(UsageError):
    """The URL does not lead to a DEEPaaS server at all (exit 2, not a conformance verdict)."""


def probe(base: str, timeout: float = 30.0) -> c.Check:
    """GET /v2/: a DEEPaaS server answers JSON describing API v2. Anything else means the URL
    is wrong or the server is down, which is not a verdict on a module."""
    answer = http.request("GET", base + "/v2/", timeout=timeout)
    if answer.status == 0:
        raise NotADeepaasServer(
            f"cannot reach {base}: {answer.error}; is the server running at that URL?"
        )
    check = c.judge_version(answer)
    if check.status != "pass":
        kind = answer.content_type or "no content type"
        raise NotADeepaasServer(
            f"{base} is not a DEEPaaS server: GET /v2/ answered HTTP {answer.status} ({kind}): "
            f"{answer.text(120) or 'empty'}; give the base URL deepaas-run listens on"
        )
    return check


def run_checks(
    url: str,
    *,
    sample: c.Sample | None = None,
    expected_model: str | None = None,
    train: bool = False,
    train_args: Mapping[str, str] | None = None,
    train_timeout: float = 600.0,
    progress: Callable[[str], None] = lambda _: None,
    no_sample: str = "no sample input",
) -> list[c.Check]:
    base = targets.check_base_url(url)
    checks: list[c.Check] = []
    later = ["metadata", "swagger", "predict", *(["train"] if train else [])]

    progress(f"GET {base}/v2/")
    checks.append(probe(base))
    progress(f"GET {base}/v2/models/")
    models, model = c.judge_models(http.request("GET", base + "/v2/models/"), expected_model)
    checks.append(models)
    if model is None:
        return checks + [_skip(name, "needs one-model to pass") for name in later]
    name = c.route_name(model)
    checks.append(c.judge_metadata(model))

    progress(f"GET {base}/swagger.json")
    spec_check, spec = c.judge_spec(http.request("GET", base + "/swagger.json"), name)
    checks.append(spec_check)
    if spec is None:
        checks.append(_skip("predict", "needs swagger to pass"))
    else:
        checks.append(c.judge_declared_schema(spec))
        plan: c.PredictRequest | c.Check | None = None
        if sample is not None:
            plan = c.plan_predict(spec, sample)
            if isinstance(plan, c.Check) and not sample.catalog:
                # The flags do not fit the module's API: the caller's to fix, not a verdict.
                raise UsageError(plan.detail)
        unknown = c.unknown_train_args(spec, dict(train_args or {})) if train else None
        if unknown:
            raise UsageError(unknown)
        if sample is None:
            checks.append(_skip("predict", no_sample))
        else:
            assert plan is not None
            checks.append(
                plan if isinstance(plan, c.Check) else _predict(base, spec, plan, progress)
            )
        if isinstance(plan, c.PredictRequest):
            checks.append(_bad_input(base, spec, plan, progress))
        else:
            why = "no sample input" if sample is None else "the sample could not be sent"
            checks.append(_skip("bad-input", f"{why}: it spoils one input of a complete sample"))
    if train:
        problem = c.judge_train_args(spec, dict(train_args or {}))
        checks.append(
            problem or _train(base, name, dict(train_args or {}), train_timeout, progress)
        )
    return checks


def _send(base: str, spec: c.PredictSpec, plan: c.PredictRequest, timeout: float) -> http.Answer:
    body, kind = http.multipart(plan.form, plan.files)
    query = ("?" + urllib.parse.urlencode(plan.query)) if plan.query else ""
    headers = {**plan.headers, "Content-Type": kind}
    return http.request(
        "POST", base + spec.path + query, body=body, headers=headers, timeout=timeout
    )


def _predict(
    base: str, spec: c.PredictSpec, plan: c.PredictRequest, progress: Callable[[str], None]
) -> c.Check:
    progress(f"POST {base}{spec.path} ({plan.describe()})")
    # A first prediction may load a big model lazily: allow more than a metadata call.
    return c.judge_predict(_send(base, spec, plan, PREDICT_TIMEOUT), spec, plan.accept)


def _bad_input(
    base: str, spec: c.PredictSpec, good: c.PredictRequest, progress: Callable[[str], None]
) -> c.Check:
    spoiled = c.plan_bad_input(spec, good)
    if isinstance(spoiled, c.Check):
        return spoiled
    plan, what = spoiled
    progress(f"POST {base}{spec.path} ({what}, every other input valid)")
    field_name = what.split("'")[1] if "'" in what else ""
    return c.judge_bad_input(_send(base, spec, plan, PREDICT_TIMEOUT), what, field_name)


def _train(
    base: str, name: str, args: dict[str, str], timeout: float, progress: Callable[[str], None]
) -> c.Check:
    path = f"{base}/v2/models/{name}/train/"
    query = ("?" + urllib.parse.urlencode(args)) if args else ""
    progress(f"POST {path}{query}")
    problem, uuid = c.judge_train_start(http.request("POST", path + query))
    if problem is not None:
        return problem
    started = time.monotonic()
    deadline = started + timeout
    record = None
    while time.monotonic() < deadline:
        answer = http.request("GET", f"{path}{uuid}")
        if answer.status == 200:
            try:
                record = answer.json()
            except (ValueError, UnicodeDecodeError):
                record = None
            if isinstance(record, dict) and record.get("status") != "running":
                return c.judge_train_record(record, timed_out=False)
        time.sleep(TRAIN_POLL_SECONDS)
    progress(f"DELETE {path}{uuid} (still running after {timeout:g}s)")
    cancel = http.request("DELETE", f"{path}{uuid}")
    after = http.request("GET", f"{path}{uuid}")  # DEEPaaS may cancel yet answer 500
    try:
        state = after.json().get("status") if after.status == 200 else None
        state = "gone" if after.status == 404 else state
    except (ValueError, UnicodeDecodeError, AttributeError):
        state = None
    return c.judge_train_record(
        record, timed_out=True, uuid=str(uuid), waited=timeout, cancel=cancel, after=state
    )
