"""Text left over from a scaffold or template, which would be published as it is.

`deepmarket new` writes placeholders that validate (so a half-written module can be previewed);
AI4OS' cookiecutter template leaves its own (`https://demo_url`, `add-some-url-pointing-to-…`).
These checks find them in module.yml values and in the README. Pure functions: text in,
findings out. They are warnings locally and errors in CI (see `Problem.severity`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from deepmarket.catalog.yamlsource import Path_

# Marker words of unfinished text. Upper case only: "todo" is a fine word in a summary.
_MARKER = re.compile(r"(?<![A-Za-z0-9])(TODO|FIXME|TBD|XXX)(?![A-Za-z0-9])")
# Owner names that templates put where the author's own account goes.
_OWNER = re.compile(
    r"(?<![a-z0-9])(your[-_]?(org|organi[sz]ation|name|user(name)?|repo(sitory)?|project|"
    r"account|team|company|module|image)|my[-_]?(org|organi[sz]ation|user(name)?))(?![a-z0-9])",
    re.IGNORECASE,
)
_TEMPLATE_PHRASE = re.compile(r"add[-_ ]some[-_ ]url|pointing[-_ ]to[-_ ]your|lorem ipsum", re.I)
# Hosts no module lives at: reserved example domains (RFC 2606) and template leftovers.
PLACEHOLDER_HOSTS = frozenset(
    {"demo_url", "url", "your_url", "your-url", "link", "todo", "tbd", "localhost", "none"}
)
_RESERVED_SUFFIXES = (".example", ".invalid", ".test", ".localhost")
_EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net")

# What to put instead, per field (the message's fix).
_FIELD_HINTS = {
    "title": "the module's name",
    "summary": "one line that says what the module does",
    "description": "a Markdown description: what it does, what it was trained on, how to use it",
    "links.source_code": "the URL of the module's code repository",
    "runtime.image": "the module's real image, pinned by a version tag or digest",
    "runtime.model": "the name of the module's deepaas.v2.model entry point",
}


def _host(value: str) -> str | None:
    if "://" not in value:
        return None
    try:
        return (urlsplit(value.strip()).hostname or urlsplit(value.strip()).netloc).lower()
    except ValueError:
        return None


def placeholder_reason(value: str) -> str | None:
    """Why `value` looks like template text, or None."""
    marker = _MARKER.search(value)
    if marker:
        return f"still holds the placeholder {marker.group(1)!r}"
    phrase = _TEMPLATE_PHRASE.search(value)
    if phrase:
        return f"still holds the template text {phrase.group(0)!r}"
    host = _host(value)
    if host is not None:
        bare = host.split(":")[0]
        if (
            bare in PLACEHOLDER_HOSTS
            or bare.endswith(_RESERVED_SUFFIXES)
            or bare in _EXAMPLE_DOMAINS
            or bare.endswith(tuple("." + d for d in _EXAMPLE_DOMAINS))
        ):
            return f"points at the placeholder host {bare!r}"
    owner = _OWNER.search(value)
    if owner:
        return f"still holds the placeholder {owner.group(0)!r}"
    return None


def _strings(data: Any, path: Path_ = ()) -> Iterator[tuple[Path_, str]]:
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and key.startswith("x-"):
                continue  # free-form extensions are the author's business
            yield from _strings(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _strings(value, (*path, i))


def _field_key(path: Path_) -> str:
    return ".".join(str(p) for p in path if isinstance(p, str))


def placeholder_fields(data: Any) -> list[tuple[Path_, str]]:
    """(field path, message) for each module.yml value that still holds template text."""
    out = []
    for path, value in _strings(data):
        if path and path[0] in ("id", "readme", "icon"):
            continue  # checked by the schema and the file rules
        reason = placeholder_reason(value)
        if reason is None:
            continue
        hint = _FIELD_HINTS.get(_field_key(path))
        if hint is None and path and path[0] == "links":
            hint = "the real URL, or remove the line"
        fix = f"replace it with {hint}" if hint else "replace it with the module's own text"
        out.append((path, f"{reason}; {fix}"))
    return out


def placeholder_lines(text: str) -> list[tuple[int, int, str]]:
    """(line, column, message) for README lines that still hold template text."""
    out = []
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence:
            continue  # code samples may mention TODO legitimately
        marker = _MARKER.search(line) or _TEMPLATE_PHRASE.search(line)
        if marker:
            out.append(
                (
                    number,
                    marker.start() + 1,
                    f"still holds the placeholder {marker.group(0)!r}; write the module's long "
                    "description here (or delete the README and the readme: key)",
                )
            )
    return out
