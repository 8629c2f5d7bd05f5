"""`deepmarket module check`: call a running DEEPaaS server and judge each answer.

The judgements live in `conformance`; this module only sends the requests, in order, and
skips what cannot be checked once an earlier check failed.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

from deepmarket.errors import UserError
from deepmarket.modules import conformance as c
from deepmarket.modules import http, targets

TRAIN_POLL_SECONDS = 0.5


def sample_from_catalog(root: Path, module_id: str) -> tuple[c.Sample | None, str]:
    """The entry's `runtime.check.predict` sample (files resolved in its directory) and
    the model name it declares."""
    model = targets.model_in_catalog(root, module_id)
    data, folder = targets.read_entry(root, module_id)
    predict = (data.get("runtime", {}).get("check") or {}).get("predict")
    if not isinstance(predict, dict):
        return None, model
    files = {str(k): folder / str(v) for k, v in (predict.get("files") or {}).items()}
    args = {str(k): str(v) for k, v in (predict.get("args") or {}).items()}
    where = f"{folder / 'module.yml'} runtime.check.predict"
    return c.Sample(args, files, where), model


def sample_from_flags(path: Path, field: str | None, args: Mapping[str, str]) -> c.Sample:
    if not path.is_file():
        raise UserError(f"--sample {path}: no such file")
    # An unnamed field ("") is bound to predict's only file argument once the spec is known.
    return c.Sample(dict(args), {field or "": path}, "--sample")


def _skip(name: str, why: str) -> c.Check:
    return c.Check(name, "skip", why)


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
    base = url.rstrip("/")
    checks: list[c.Check] = []
    later = ["metadata", "swagger", "predict", *(["train"] if train else [])]

    progress(f"GET {base}/v2/")
    version = c.judge_version(http.request("GET", base + "/v2/"))
    checks.append(version)
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
        if sample is None:
            checks.append(_skip("predict", no_sample))
        else:
            checks.append(_predict(base, spec, sample, progress))
        if spec.file_fields:
            checks.append(_bad_input(base, spec, progress))
    if train:
        checks.append(_train(base, name, dict(train_args or {}), train_timeout, progress))
    return checks


def _predict(
    base: str, spec: c.PredictSpec, sample: c.Sample, progress: Callable[[str], None]
) -> c.Check:
    plan = c.plan_predict(spec, sample)
    if isinstance(plan, c.Check):
        return plan
    body, kind = http.multipart(plan.form, plan.files)
    progress(f"POST {base}{spec.path} ({', '.join([*plan.files, *plan.form, *plan.headers])})")
    headers = {**plan.headers, "Content-Type": kind}
    # A first prediction may load a big model lazily: allow more than a metadata call.
    answer = http.request("POST", base + spec.path, body=body, headers=headers, timeout=300)
    return c.judge_predict(answer, spec, plan.headers.get("Accept", ""))


def _bad_input(base: str, spec: c.PredictSpec, progress: Callable[[str], None]) -> c.Check:
    field = spec.file_fields[0]
    body, kind = http.multipart({}, {field: ("empty.bin", b"")})
    progress(f"POST {base}{spec.path} (empty {field})")
    answer = http.request("POST", base + spec.path, body=body, headers={"Content-Type": kind})
    return c.judge_bad_input(answer, field)


def _train(
    base: str, name: str, args: dict[str, str], timeout: float, progress: Callable[[str], None]
) -> c.Check:
    path = f"{base}/v2/models/{name}/train/"
    query = ("?" + urllib.parse.urlencode(args)) if args else ""
    progress(f"POST {path}{query}")
    problem, uuid = c.judge_train_start(http.request("POST", path + query))
    if problem is not None:
        return problem
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        answer = http.request("GET", f"{path}{uuid}")
        if answer.status == 200:
            record = answer.json()
            if record.get("status") != "running":
                return c.judge_train_record(record, timed_out=False)
        time.sleep(TRAIN_POLL_SECONDS)
    return c.judge_train_record(record, timed_out=True)
