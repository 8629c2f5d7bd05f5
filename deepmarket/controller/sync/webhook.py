"""GitHub webhook deliveries judged (pure): signature, event, branch, duplicate.

Only `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with the shared secret) is accepted;
the SHA-1 `X-Hub-Signature` is ignored even when present. The comparison is constant-time.
Every answer is a `Verdict`: the HTTP status the receiver sends, a short reason GitHub shows
in its delivery log, and — for an accepted push — the exact revision to sync.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

MAX_BODY = 5 * 1024 * 1024  # GitHub caps payloads at 25 MB; a catalog push is far smaller
PATH_PREFIX = "/hooks/catalogsources"
ZERO = "0" * 40
_SHA = re.compile(r"^[0-9a-f]{40}$")
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@dataclass(frozen=True)
class Verdict:
    status: int
    reason: str
    revision: str | None = None  # the pushed `after` commit to sync
    delivery: str | None = None


def hook_path(namespace: str, name: str) -> str:
    """The receiver's path for one CatalogSource (also written to its status.webhookPath)."""
    return f"{PATH_PREFIX}/{namespace}/{name}"


def parse_path(path: str) -> tuple[str, str] | None:
    """(namespace, name) of a hook path, or None when the path is not one."""
    prefix = PATH_PREFIX + "/"
    if not path.startswith(prefix):
        return None
    parts = path[len(prefix) :].strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return parts[0], parts[1]


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not secret:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())


def judge(
    headers: Mapping[str, str],
    body: bytes,
    secret: bytes | None,
    branch: str,
) -> Verdict:
    """The answer to one delivery for a CatalogSource following `branch`.

    `headers` must be case-insensitive (aiohttp's are). Checked in this order, so that nothing
    about the payload is looked at before it is proven to come from the secret's holder.
    """
    if secret is None:
        return Verdict(503, "the CatalogSource has no usable webhook secret (spec.webhook)")
    sig = headers.get("X-Hub-Signature-256")
    if not sig:
        return Verdict(401, "missing X-Hub-Signature-256 (set the webhook's secret on GitHub)")
    if not signature_ok(secret, body, sig):
        return Verdict(403, "X-Hub-Signature-256 does not match the secret")
    delivery = headers.get("X-GitHub-Delivery") or None
    if delivery is not None and not _DELIVERY.match(delivery):
        return Verdict(400, "X-GitHub-Delivery is not a delivery id")
    event = headers.get("X-GitHub-Event", "")
    if event == "ping":
        return Verdict(200, "pong", delivery=delivery)
    if event != "push":
        return Verdict(
            200, f"ignored: event {event or '(none)'!r} is not handled", delivery=delivery
        )
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Verdict(400, "the body is not JSON (choose content type application/json)")
    if not isinstance(payload, dict):
        return Verdict(400, "the push payload is not a JSON object")
    ref, after = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str) or not isinstance(after, str) or not _SHA.match(after):
        return Verdict(400, "the push payload lacks ref or a 40-hex after")
    if ref != f"refs/heads/{branch}":
        return Verdict(200, f"ignored: push to {ref}, this source follows refs/heads/{branch}",
                       delivery=delivery)  # fmt: skip
    if after == ZERO:
        # The branch was deleted: sync anyway, so status says so; nothing is pruned.
        return Verdict(202, f"branch {branch} deleted; keeping what runs", revision=ZERO,
                       delivery=delivery)  # fmt: skip
    return Verdict(202, f"sync of {after} queued", revision=after, delivery=delivery)


class Deliveries:
    """The most recent delivery ids seen (bounded), to ignore GitHub's redeliveries."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, key: str) -> bool:
        if key in self.seen:
            self.seen.move_to_end(key)
            return False
        self.seen[key] = None
        if len(self.seen) > self.size:
            self.seen.popitem(last=False)
        return True
