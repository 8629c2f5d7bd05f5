"""GitHub's error answers as one line each: what failed, why, and what to do.

Pure: status code, GitHub's `message`/`errors`, the response headers and the clock in; a
sentence out. The token never reaches here, so it cannot end up in a message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

TOKEN_HELP = (
    "set GITHUB_TOKEN or pass --token-file with a token that has the 'repo' scope "
    "(classic) or Contents and Pull requests read/write (fine-grained)"
)


def _rate_limited(status: int, headers: Mapping[str, str]) -> bool:
    return status in (403, 429) and (
        headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers
    )


def _reset_phrase(headers: Mapping[str, str], now: float) -> str:
    retry = headers.get("retry-after")
    if retry and retry.isdigit():
        return f"wait {int(retry)} s (GitHub's Retry-After) and run submit again"
    reset = headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        at = dt.datetime.fromtimestamp(int(reset), dt.UTC)
        minutes = max(0, round((int(reset) - now) / 60))
        return f"it resets at {at:%H:%M:%S} UTC (in {minutes} min); run submit again then"
    return "wait a few minutes and run submit again"


def _details(errors: Sequence[Any]) -> str:
    parts = []
    for error in errors:
        if isinstance(error, Mapping):
            text = error.get("message") or " ".join(
                str(error[k]) for k in ("resource", "field", "code") if error.get(k)
            )
        else:
            text = str(error)
        if text:
            parts.append(text)
    return "; ".join(parts)


def describe(
    status: int,
    message: str | None,
    errors: Sequence[Any],
    headers: Mapping[str, str],
    *,
    doing: str,
    now: float,
) -> str:
    """One line for a failed GitHub request made while `doing` (e.g. 'creating branch
    add-x in alice/catalog'). `headers` must have lower-case names."""
    said = (message or "no message").strip().rstrip(".")
    if _rate_limited(status, headers):
        limit = headers.get("x-ratelimit-limit")
        of = f" ({limit} requests an hour)" if limit else ""
        kind = "secondary rate limit" if "retry-after" in headers else f"rate limit{of}"
        return f"GitHub's {kind} is used up while {doing}: {_reset_phrase(headers, now)}"
    if status == 401:
        return f"GitHub refused the token (401 {said}) while {doing}: {TOKEN_HELP}"
    if status == 403:
        sso = headers.get("x-github-sso")
        if sso:
            return (
                f"GitHub refused access (403 {said}) while {doing}: the organisation uses "
                f"SAML single sign-on; authorise the token for it ({sso.split('url=')[-1]})"
            )
        return (
            f"GitHub refused access (403 {said}) while {doing}: the token may lack a scope "
            f"or the repository may be archived or read-only; {TOKEN_HELP}"
        )
    if status == 404:
        return (
            f"GitHub found nothing (404 {said}) while {doing}: check the repository name "
            "(--repo owner/name) and that the token can see it (private repositories need "
            "the 'repo' scope)"
        )
    if status == 409:
        return f"GitHub reported a conflict (409 {said}) while {doing}: try again in a minute"
    if status == 422:
        details = _details(errors)
        why = f"{said}: {details}" if details else said
        return f"GitHub rejected the request (422 {why}) while {doing}"
    if status >= 500:
        return f"GitHub failed (HTTP {status} {said}) while {doing}: try again in a few minutes"
    return f"GitHub answered HTTP {status} ({said}) while {doing}"
