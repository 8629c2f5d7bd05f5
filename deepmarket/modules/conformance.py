"""What a conforming DEEPaaS server answers, as pure judgements over recorded HTTP answers.

Each `judge_*` function takes what the server said and returns a `Check` (pass, fail, warn or
skip) whose detail says what was seen and, on failure, what to change. `checker` does the I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepmarket.modules.http import Answer

Status = Literal["pass", "fail", "warn", "skip"]
TEST_MODEL = "deepaas-test"  # what DEEPaaS serves when no module loads (DEEPaaS #103)
REQUIRED_METADATA = ("name", "author", "license")
NO_DESCRIPTION = "Could not load description from underlying model"
SCHEMA_REJECTED = "ERROR validating model response"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class Sample:
    """A known-good predict input: form/header arguments and files by form field."""

    args: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    origin: str = ""  # where it came from, for messages
    # From a catalog entry's runtime.check.predict: a mismatch with the module is a defect of
    # the entry (a verdict). From command-line flags it is the caller's to fix (exit 2).
    catalog: bool = False


@dataclass(frozen=True)
class PredictSpec:
    """The predict operation as /swagger.json declares it."""

    path: str
    parameters: tuple[dict[str, Any], ...]
    response_schema: dict[str, Any] | None  # self-contained JSON Schema, or None
    generic_response: bool  # DEEPaaS's own {status, predictions: str} wrapper
    produces: tuple[str, ...] = ()
    train_parameters: tuple[dict[str, Any], ...] | None = None  # None: no train operation

    @property
    def file_fields(self) -> list[str]:
        return [p["name"] for p in self.parameters if p.get("type") == "file"]

    def location(self, name: str) -> str | None:
        for param in self.parameters:
            if param.get("name") == name:
                return str(param.get("in", "query"))
        return None

    def param(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.parameters if p.get("name") == name), None)


def _json(answer: Answer) -> tuple[Any, str | None]:
    try:
        return answer.json(), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"answered non-JSON ({answer.content_type or 'no content type'}): {exc}"


def _no_answer(what: str, answer: Answer) -> str:
    if answer.status == 0:
        return f"{what}: no answer ({answer.error}); is the server running at that URL?"
    return f"{what} answered HTTP {answer.status}: {answer.text(200)}"


def judge_version(answer: Answer) -> Check:
    name = "api-v2"
    if answer.status != 200:
        return Check(name, "fail", _no_answer("GET /v2/", answer))
    data, error = _json(answer)
    if error:
        return Check(name, "fail", f"GET /v2/ {error}")
    if not isinstance(data, dict) or data.get("id") != "v2":
        return Check(name, "fail", f"GET /v2/ does not describe API v2: {answer.text(200)}")
    return Check(name, "pass", f"GET /v2/ answered version {data.get('version', '?')!r}")


def judge_models(answer: Answer, expected: str | None = None) -> tuple[Check, dict | None]:
    """Exactly one model, not DEEPaaS's fallback, and the one the catalog names."""
    name = "one-model"
    if answer.status != 200:
        return Check(name, "fail", _no_answer("GET /v2/models/", answer)), None
    data, error = _json(answer)
    if error:
        return Check(name, "fail", f"GET /v2/models/ {error}"), None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        return Check(name, "fail", "GET /v2/models/ has no 'models' list"), None
    names = sorted(route_name(m) for m in models)
    if not models:
        return Check(name, "fail", "the server serves no model"), None
    if TEST_MODEL in names:
        return Check(
            name,
            "fail",
            f"the server fell back to DEEPaaS's built-in test model {TEST_MODEL!r}: no module "
            "loaded (an entry point failed to import, or none is installed); the server log "
            "names the error",
        ), None
    if len(models) > 1:
        return Check(
            name,
            "fail",
            f"the server serves {len(models)} models ({', '.join(names)}); a deployment "
            "serves exactly one: uninstall the others or set DEEPAAS_V2_MODEL",
        ), None
    if expected and names[0] != expected:
        return Check(
            name,
            "fail",
            f"the server serves model {names[0]!r} but the catalog's runtime.model is "
            f"{expected!r}; make them agree",
        ), None
    return Check(name, "pass", f"serves one model, {names[0]!r}"), models[0]


def route_name(model: dict[str, Any]) -> str:
    """The name in the model's URLs (its entry-point name). Not `id` or `name`: a module's
    metadata may override both (DEEPaaS's placeholder sets id "0"); the self link stays."""
    for link in model.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"]).rstrip("/").rsplit("/", 1)[-1]
    return str(model.get("id") or model.get("name"))


def judge_metadata(model: dict[str, Any]) -> Check:
    name = "metadata"
    missing = [key for key in REQUIRED_METADATA if not str(model.get(key) or "").strip()]
    if NO_DESCRIPTION in str(model.get("description", "")):
        return Check(
            name,
            "fail",
            "get_metadata() is missing or not implemented (DEEPaaS filled in a placeholder); "
            f"return a dict with {', '.join(REQUIRED_METADATA)} and description",
        )
    if missing:
        return Check(
            name,
            "fail",
            f"get_metadata() lacks {', '.join(missing)}; return them (non-empty strings)",
        )
    shown = ", ".join(
        f"{key}={model[key]!r}" for key in ("author", "license", "version") if key in model
    )
    return Check(name, "pass", shown)


def _resolve_schema(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "definitions": definitions}


def judge_spec(answer: Answer, model: str) -> tuple[Check, PredictSpec | None]:
    """/swagger.json parses and declares the predict operation with arguments."""
    name = "swagger"
    if answer.status != 200:
        return Check(name, "fail", _no_answer("GET /swagger.json", answer)), None
    spec, error = _json(answer)
    if error:
        return Check(name, "fail", f"GET /swagger.json {error}"), None
    if not isinstance(spec, dict) or not isinstance(spec.get("paths"), dict):
        return Check(name, "fail", "/swagger.json has no 'paths'"), None
    path = f"/v2/models/{model}/predict/"
    operation = _operation(spec, path)
    if not isinstance(operation, dict):
        return Check(name, "fail", f"/swagger.json declares no POST {path}"), None
    raw = operation.get("parameters")
    parameters = (
        tuple(p for p in raw if isinstance(p, dict) and isinstance(p.get("name"), str))
        if isinstance(raw, list)
        else ()
    )
    inputs = [p["name"] for p in parameters if p.get("name") != "accept"]
    if not inputs:
        return Check(
            name,
            "fail",
            f"POST {path} declares no arguments; get_predict_args() should return the inputs",
        ), None
    responses = operation.get("responses")
    ok = responses.get("200") if isinstance(responses, dict) else None
    response = ok.get("schema") if isinstance(ok, dict) else None
    definitions = spec.get("definitions") if isinstance(spec.get("definitions"), dict) else {}
    schema = _resolve_schema(response, definitions) if isinstance(response, dict) else None
    generic = isinstance(response, dict) and response.get("$ref") == "#/definitions/Prediction"
    train_op = _operation(spec, f"/v2/models/{model}/train/")
    train_params = (
        tuple(p for p in train_op.get("parameters") or [] if isinstance(p, dict))
        if isinstance(train_op, dict)
        else None
    )
    produces = tuple(str(x) for x in operation.get("produces") or [])
    spec_out = PredictSpec(path, parameters, schema, generic, produces, train_params)
    return Check(name, "pass", f"predict declares {', '.join(inputs)}"), spec_out


def _operation(spec: dict[str, Any], path: str) -> dict[str, Any] | None:
    item = spec["paths"].get(path)
    post = item.get("post") if isinstance(item, dict) else None
    return post if isinstance(post, dict) else None


def judge_declared_schema(spec: PredictSpec) -> Check:
    name = "response-schema"
    if spec.response_schema is None or spec.generic_response:
        return Check(
            name,
            "warn",
            "the module declares no response schema, so DEEPaaS sends str(result) inside "
            "{status, predictions} and clients cannot parse it; set `schema` in the entry point",
        )
    props = sorted(_definition(spec.response_schema).get("properties", {}))
    return Check(name, "pass", f"declares {', '.join(props) or 'a schema'}")


def _definition(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/definitions/"):
        return schema.get("definitions", {}).get(ref.split("/")[-1], {})
    return schema


@dataclass(frozen=True)
class PredictRequest:
    form: dict[str, str]
    files: dict[str, Path | tuple[str, bytes]]
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    accept: str = ""  # the media type asked for, wherever the spec takes it

    def describe(self) -> str:
        return ", ".join([*self.files, *self.form, *self.query, *self.headers])


def plan_predict(spec: PredictSpec, sample: Sample) -> PredictRequest | Check:
    """Place the sample's arguments where the spec declares them (header, form, file)."""
    name = "predict"
    if "" in sample.files:  # --sample without --field
        if len(spec.file_fields) != 1:
            return Check(
                name,
                "fail",
                f"predict declares {len(spec.file_fields)} file arguments "
                f"({', '.join(spec.file_fields) or 'none'}); name one with --field, or give "
                "each with --file NAME=PATH",
            )
        files = {spec.file_fields[0] if k == "" else k: v for k, v in sample.files.items()}
        sample = Sample(sample.args, files, sample.origin, sample.catalog)
    declared = {p["name"] for p in spec.parameters}
    unknown = sorted((set(sample.args) | set(sample.files)) - declared)
    if unknown:
        return Check(
            name,
            "fail",
            f"{sample.origin} gives {', '.join(unknown)}, which predict does not declare "
            f"(declared: {', '.join(sorted(declared))})",
        )
    not_files = [f for f in sample.files if f not in spec.file_fields]
    if not_files:
        return Check(
            name, "fail", f"{', '.join(not_files)} is not a file argument of predict; "
            "declare it with fields.Field(metadata={'type': 'file', 'location': 'form'})"
        )  # fmt: skip
    given = set(sample.args) | set(sample.files)
    missing = [
        p["name"] for p in spec.parameters
        if p.get("required") and p["name"] not in given and "default" not in p
    ]  # fmt: skip
    if missing:
        return Check(name, "fail", f"{sample.origin} lacks required {', '.join(missing)}")
    for param in spec.parameters:
        value = sample.args.get(str(param["name"]))
        why = _unfit_value(param, value) if value is not None else None
        if why:  # the module would only answer 422: say so before sending
            return Check(name, "fail", f"{sample.origin} gives {param['name']}={value}, {why}")
    for path in sample.files.values():
        if not path.is_file():
            return Check(name, "fail", f"sample file {path} does not exist")
    headers: dict[str, str] = {}
    form: dict[str, str] = {}
    query: dict[str, str] = {}
    for key, value in sample.args.items():
        where = spec.location(key)
        if where == "header":
            headers[key.title()] = str(value)
        elif where == "formData":
            form[key] = str(value)
        else:  # DEEPaaS declares its plain arguments in the query string
            query[key] = str(value)
    accept = str(sample.args.get("accept", ""))
    if not accept and spec.location("accept") is None and spec.produces:
        accept = "application/json" if "application/json" in spec.produces else ""
    if accept and spec.location("accept") is None:
        headers["Accept"] = accept  # no accept argument: HTTP's own header
    return PredictRequest(form, dict(sample.files), headers, query, accept)


def _unfit_value(param: dict[str, Any], value: str) -> str | None:
    """Why `value` cannot be valid for the declared parameter (enum, number, range), or None."""
    allowed = param.get("enum")
    if isinstance(allowed, list) and allowed and value not in [str(a) for a in allowed]:
        return f"but predict accepts only {', '.join(str(a) for a in allowed)}"
    kind = param.get("type")
    if kind not in ("integer", "number"):
        return None
    try:
        number = int(value) if kind == "integer" else float(value)
    except ValueError:
        return f"but predict declares it {'an integer' if kind == 'integer' else 'a number'}"
    low, high = param.get("minimum"), param.get("maximum")
    too_low = isinstance(low, int | float) and number < low
    too_high = isinstance(high, int | float) and number > high
    if too_low or too_high:
        return f"but predict declares it between {low} and {high}"
    return None


def plan_bad_input(spec: PredictSpec, good: PredictRequest) -> tuple[PredictRequest, str] | Check:
    """The known-good request with exactly one input spoiled, so a 4xx can only be about
    that input: an empty upload in the first file field, else a word in a number field."""
    name = "bad-input"
    if spec.file_fields:
        field_name = spec.file_fields[0]
        files = {**good.files, field_name: ("empty.bin", b"")}
        return PredictRequest(good.form, files, good.headers, good.query, good.accept), (
            f"an empty file in {field_name!r}"
        )
    for param in spec.parameters:
        if param.get("type") in ("integer", "number") and param.get("name") != "accept":
            where = spec.location(str(param["name"]))
            bad = "not-a-number"
            query, form = dict(good.query), dict(good.form)
            (form if where == "formData" else query)[str(param["name"])] = bad
            return PredictRequest(form, good.files, good.headers, query, good.accept), (
                f"{bad!r} in the number argument {param['name']!r}"
            )
    return Check(name, "skip", "predict declares no file or number argument to spoil")


def judge_predict(answer: Answer, spec: PredictSpec, accept: str) -> Check:
    """The sample's answer: 200, and valid against the declared schema (or the asked type)."""
    name = "predict"
    if answer.status == 0:
        return Check(name, "fail", _no_answer("predict", answer))
    if answer.status == 500 and SCHEMA_REJECTED in answer.text():
        return Check(
            name,
            "fail",
            "predict's answer does not match the module's declared schema (DEEPaaS rejected "
            "it with HTTP 500; the server log shows the validation error)",
        )
    if answer.status >= 500:
        return Check(
            name,
            "fail",
            f"predict failed with HTTP {answer.status} ({answer.text(160) or 'no body'}): the "
            "module raised on a known-good input; the server log has the traceback",
        )
    if answer.status == 501:
        return Check(name, "fail", "predict is not implemented by the module (HTTP 501)")
    if answer.status != 200:
        return Check(
            name,
            "fail",
            f"predict rejected the sample input with HTTP {answer.status}: {answer.text(200)}",
        )
    if accept not in ("", "application/json", "*/*"):
        got = answer.content_type
        if not media_matches(accept, got):
            return Check(name, "fail", f"asked for {accept} but got {got or 'no content type'}")
        problem = binary_problem(got, answer.body)
        if problem:
            return Check(name, "fail", f"asked for {accept}, got {got}, but {problem}")
        return Check(name, "pass", f"answered {len(answer.body)} bytes of {got}")
    data, error = _json(answer)
    if error:
        return Check(name, "fail", f"predict {error}")
    if spec.response_schema is not None:
        import jsonschema

        validator = jsonschema.Draft4Validator(spec.response_schema)
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            return Check(
                name,
                "fail",
                f"predict's answer does not match the declared schema at {where}: "
                f"{errors[0].message}",
            )
    return Check(name, "pass", f"answered {_summary(data)}")


def judge_bad_input(answer: Answer, what: str, spoiled: str = "") -> Check:
    """One spoiled input, every other one valid: a 4xx with a message is right; a 5xx is a
    crash on bad input (DEEPaaS #82); a 2xx means the module accepts garbage."""
    name = "bad-input"
    if answer.status == 0:
        return Check(name, "fail", _no_answer("predict", answer))
    if 400 <= answer.status < 500:
        others = _other_fields_blamed(answer, spoiled)
        if others:
            return Check(
                name,
                "warn",
                f"{what} got HTTP {answer.status}, but the answer blames {', '.join(others)}: "
                "the sample does not give every input the module needs",
            )
        return Check(name, "pass", f"{what} got HTTP {answer.status}: {answer.text(120)}")
    if answer.status >= 500:
        return Check(
            name,
            "fail",
            f"{what} got HTTP {answer.status}: predict should check its input and raise a 4xx "
            "with a message (see InputRejected in examples/modules/digits)",
        )
    return Check(
        name,
        "warn",
        f"{what} was accepted (HTTP {answer.status}): the module answers garbage input as if "
        "it were valid; check inputs and refuse bad ones with a 4xx",
    )


def _other_fields_blamed(answer: Answer, spoiled: str) -> list[str]:
    """Fields named in DEEPaaS's validation answer ({"field": ["message"], …}) other than the
    spoiled one."""
    try:
        data = answer.json()
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(data, dict) or not spoiled:
        return []
    fields = [k for k, v in data.items() if isinstance(v, list) and k not in ("message",)]
    return sorted(k for k in fields if k != spoiled)


def media_matches(asked: str, got: str) -> bool:
    """`got` is what `asked` allows: equal, or inside a wildcard such as image/*."""
    asked, got = asked.split(";")[0].strip().lower(), got.split(";")[0].strip().lower()
    if not got:
        return False
    if asked in ("*/*", got):
        return True
    major, _, minor = asked.partition("/")
    return minor == "*" and got.split("/")[0] == major


# Leading bytes of binary formats modules return, to catch a body that is not what it says
SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/zip": (b"PK\x03\x04", b"PK\x05\x06"),
    "application/pdf": (b"%PDF",),
    "audio/wav": (b"RIFF",),
    "audio/x-wav": (b"RIFF",),
    "image/webp": (b"RIFF",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
    "image/bmp": (b"BM",),
}


def binary_problem(kind: str, body: bytes) -> str | None:
    kind = kind.split(";")[0].strip().lower()
    if not body:
        return "the body is empty"
    if kind.endswith("/*"):  # DEEPaaS labels the answer with the wildcard that was asked
        signatures = tuple(
            sig for k, sigs in SIGNATURES.items() if k.startswith(kind[:-1]) for sig in sigs
        )
        if signatures and not body.startswith(signatures):
            return f"the body does not start like any {kind} format ({body[:8]!r})"
        return None
    signatures = SIGNATURES.get(kind)
    if signatures and not body.startswith(signatures):
        return f"the body does not start like a {kind} file ({body[:8]!r})"
    return None


def _summary(data: Any) -> str:
    text = json.dumps(data, sort_keys=True)
    return text if len(text) <= 120 else text[:120] + "…"


def judge_train_start(answer: Answer) -> tuple[Check | None, str | None]:
    name = "train"
    if answer.status == 402:
        return Check(name, "fail", "training is disabled on this server (HTTP 402)"), None
    if answer.status != 200:
        return Check(name, "fail", _no_answer("POST train/", answer)), None
    data, error = _json(answer)
    if error or not isinstance(data, dict) or not data.get("uuid"):
        return Check(name, "fail", f"POST train/ gave no training uuid: {answer.text(200)}"), None
    return None, str(data["uuid"])


def unknown_train_args(spec: PredictSpec | None, args: dict[str, str]) -> str | None:
    """--train-arg names the train operation does not declare (DEEPaaS would ignore them):
    a mistake in the command, found before anything is sent."""
    if spec is None or spec.train_parameters is None or not args:
        return None
    declared = sorted(str(p.get("name")) for p in spec.train_parameters)
    unknown = sorted(set(args) - set(declared))
    if not unknown:
        return None
    return (
        f"--train-arg {', '.join(unknown)}: train does not declare "
        f"{'it' if len(unknown) == 1 else 'them'} (declared: {', '.join(declared) or 'none'})"
    )


def judge_train_args(spec: PredictSpec | None, args: dict[str, str]) -> Check | None:
    """A training asked of a module whose swagger declares none, or with arguments it does
    not declare."""
    if spec is None or not args:
        return None
    if spec.train_parameters is None:
        return Check("train", "fail", "/swagger.json declares no POST train/ operation")
    unknown = unknown_train_args(spec, args)
    return Check("train", "fail", unknown) if unknown else None


def judge_train_record(
    record: dict[str, Any] | None,
    timed_out: bool,
    *,
    uuid: str = "",
    waited: float = 0.0,
    cancel: Answer | None = None,
    after: str | None = None,
) -> Check:
    name = "train"
    if timed_out or record is None:
        how = ""
        if cancel is not None:
            if cancel.status in (200, 202, 204):
                how = "; cancelled it"
            elif after and after != "running":
                how = (
                    f"; cancelled it (its status is now {after!r}, though DELETE answered "
                    f"HTTP {cancel.status})"
                )
            else:
                how = f"; cancelling it failed ({_no_answer('DELETE', cancel)})"
        return Check(
            name,
            "fail",
            f"training {uuid or '?'} was still running after {waited:g}s{how}; give more time "
            "with --train-timeout or fewer epochs with --train-arg",
        )
    status = record.get("status")
    if status == "done":
        output = (record.get("result") or {}).get("output")
        return Check(name, "pass", f"training finished: {_summary(output)}")
    if status == "error":
        return Check(name, "fail", f"training failed: {record.get('message', 'no message')}")
    return Check(name, "fail", f"training ended with status {status!r}")


def passed(checks: list[Check]) -> bool:
    return not any(check.status == "fail" for check in checks)
