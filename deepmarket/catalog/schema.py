"""The JSON Schemas of the catalog, compiled once, and their errors as located `Problem`s."""

from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path
from typing import Any

from deepmarket.catalog.formats import CHECKS, suggest_id, suggest_slug
from deepmarket.catalog.model import Problem
from deepmarket.catalog.yamlsource import ParsedYaml, Path_

SCHEMA_DIR = Path(__file__).with_name("schemas")
MODULE = "module"
INDEX = "modules"

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    return "a list"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """`module` or `modules`: the schema document shipped with the package."""
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


@functools.cache
def fast_validator(name: str) -> Any:
    """The schema compiled by jsonschema-rs: about 20x faster, used to pass valid documents.

    Its errors are terse, so an invalid document is validated again by `validator` for
    messages people can act on. Both assert the same format checks.
    """
    import jsonschema_rs

    formats = {
        fmt: (lambda value, check=check: check(value) is None) for fmt, check in CHECKS.items()
    }
    return jsonschema_rs.Draft202012Validator(
        load_schema(name), formats=formats, validate_formats=True
    )


@functools.cache
def validator(name: str) -> Any:
    """The compiled reference validator, with deepmarket's format checks asserted."""
    from jsonschema import Draft202012Validator, FormatChecker

    checker = FormatChecker(formats=())
    for fmt, check in CHECKS.items():

        def _assert(value: object, check: Any = check) -> bool:
            if not isinstance(value, str):
                return True
            reason = check(value)
            if reason:
                raise ValueError(reason)
            return True

        checker.checks(fmt, raises=ValueError)(_assert)
    return Draft202012Validator(load_schema(name), format_checker=checker)


def _allowed_keys(schema: dict[str, Any]) -> list[str]:
    return list(schema.get("properties", {}))


def _message(error: Any) -> str:
    kw = error.validator
    value = error.instance
    schema = error.schema
    if "errorMessage" in schema and kw in ("pattern", "maxLength", "minLength"):
        if kw == "maxLength":
            return f"is {len(value)} characters long; at most {error.validator_value} allowed"
        fix = _pattern_fix(error)
        rule = (
            re.sub(r",? e\.g\. .*$", "", schema["errorMessage"]) if fix else schema["errorMessage"]
        )
        return f"{value!r} {rule}{fix}"
    if kw == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        names = " or ".join(_TYPE_NAMES.get(w, w) for w in wanted)
        return f"expected {names}, got {_kind(value)}"
    if kw == "enum":
        options = [str(o) for o in error.validator_value]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{value!r} is not one of: {', '.join(options)}{hint}"
    if kw == "format":
        return f"{value!r} {error.cause or 'is not a valid ' + str(error.validator_value)}"
    if kw == "maxLength":
        return f"is {len(value)} characters long; at most {error.validator_value} allowed"
    if kw == "minLength":
        return "must not be empty"
    if kw == "minItems":
        return f"must list at least {error.validator_value} item(s)"
    if kw == "minProperties":
        return f"must have at least {error.validator_value} key(s)"
    if kw == "uniqueItems":
        seen: list[Any] = []
        for item in value:
            if item in seen:
                return f"lists {item!r} more than once"
            seen.append(item)
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"{value!r} must be {word[kw]} {error.validator_value}"
    return error.message


def _pattern_fix(error: Any) -> str:
    """A rewrite of the author's own value that the pattern accepts, when one is obvious."""
    value = error.instance
    if not isinstance(value, str):
        return ""
    path = [p for p in error.absolute_path if isinstance(p, str)]
    field = path[-1] if path else ""
    if field == "id" or field == "tags" or (path[:1] == ["tags"]):
        guess = suggest_id(value) if field == "id" else suggest_slug(value)
        if guess and guess != value and re.search(error.validator_value, guess):
            return f"; write it as {guess!r}"
    if error.validator_value == "^https?://" and ":" not in value.split("/")[0]:
        guess = "https://" + value.lstrip("/")
        return f"; write {guess!r}"
    return ""


def problems_from_schema(parsed: ParsedYaml, name: str) -> list[Problem]:
    """Validate parsed data against a schema; every error located at its field."""
    if fast_validator(name).is_valid(parsed.data):
        return []
    out: list[Problem] = []
    seen: set[Problem] = set()
    valued: set[Path_] = set()
    for error in validator(name).iter_errors(parsed.data):
        path: Path_ = tuple(error.absolute_path)
        kw = error.validator
        if kw == "additionalProperties":
            allowed = _allowed_keys(error.schema)
            pattern = error.schema.get("patternProperties", {})
            for key in error.instance:
                if key in allowed or any(re.search(p, key) for p in pattern):
                    continue
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                out.append(
                    parsed.problem(
                        (*path, key),
                        f"unknown key {key!r} ({hint}extension keys must start with 'x-')",
                        key=True,
                    )
                )
        elif kw == "required":
            for key in error.validator_value:
                if isinstance(error.instance, dict) and key not in error.instance:
                    line, col = parsed.pos(path)
                    out.append(
                        Problem(
                            parsed.file,
                            line,
                            col,
                            _join(path, key),
                            f"missing required field {key!r}",
                        )
                    )
        elif path in valued:
            continue  # one message per value: e.g. a URL without scheme fails format and pattern
        else:
            valued.add(path)
            out.append(parsed.problem(path, _message(error)))
    if not out:  # the two validators disagree: never let the fast one's verdict pass silently
        for error in fast_validator(name).iter_errors(parsed.data):
            out.append(parsed.problem(tuple(error.instance_path), error.message))
    return [p for p in out if not (p in seen or seen.add(p))]


def _join(path: Path_, key: str) -> str:
    from deepmarket.catalog.yamlsource import dotted

    return dotted((*path, key))
