"""A CatalogSource's status from the outcome of one sync (pure).

Flux-style: `lastAttemptedRevision` is the newest revision looked at, `lastAppliedRevision`
the newest one applied; conditions `Ready`, `Reconciling`, `Stalled`; the inventory of owned
DeepModules and a short history. A status that would not change is not written, so an
unchanged revision costs no write at all — timestamps move only when something else does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

HISTORY_MAX = 10
MESSAGE_MAX = 1500


@dataclass(frozen=True)
class Result:
    """What one sync attempt found. `reason` is a CamelCase condition reason:

    Succeeded, Conflict (applied, some names held by others), InvalidCatalog, HistoryRewritten,
    PruneHeld, FetchFailed, BranchNotFound, ApplyFailed, Progressing (an apply under way),
    Suspended.
    """

    reason: str
    message: str
    attempted: str | None = None  # the revision looked at (None when nothing was fetched)
    applied: str | None = None  # set when this attempt applied `attempted`
    inventory: tuple[str, ...] | None = None  # owned DeepModule names (None: unchanged)
    held: str | None = None  # the commit awaiting approval
    requested_at: str | None = None  # the requested-at annotation this attempt handled
    changes: dict[str, int] = field(default_factory=dict)


OK_REASONS = {"Succeeded"}
STALLED_REASONS = {"InvalidCatalog", "HistoryRewritten", "PruneHeld"}


def _cond(
    old: Mapping[str, Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> dict[str, Any]:
    value = "True" if status else "False"
    before = old.get(type_) or {}
    changed = before.get("status") != value
    return {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:MESSAGE_MAX],
        "observedGeneration": generation,
        "lastTransitionTime": now if changed or not before else before["lastTransitionTime"],
    }


def next_status(
    current: Mapping[str, Any] | None,
    result: Result,
    *,
    generation: int,
    now: str,
    webhook_path: str,
) -> dict[str, Any]:
    """The status after `result`, keeping what the attempt did not learn anything new about."""
    cur = dict(current or {})
    old = {c["type"]: c for c in cur.get("conditions") or []}
    out: dict[str, Any] = {"observedGeneration": generation, "webhookPath": webhook_path}
    for key in ("lastAppliedRevision", "lastAttemptedRevision", "inventory", "modules",
                "heldRevision", "lastHandledRequestedAt", "history"):  # fmt: skip
        if key in cur:
            out[key] = cur[key]
    if result.attempted:
        out["lastAttemptedRevision"] = result.attempted
    if result.applied:
        out["lastAppliedRevision"] = result.applied
    if result.inventory is not None:
        out["inventory"] = list(result.inventory)
        out["modules"] = len(result.inventory)
    if result.held:
        out["heldRevision"] = result.held
    elif result.reason != "Progressing":
        out.pop("heldRevision", None)
    if result.requested_at:
        out["lastHandledRequestedAt"] = result.requested_at
    reason, message = result.reason, result.message
    progressing = reason == "Progressing"
    if progressing:  # Ready keeps its value while the apply runs
        ready_old = old.get("Ready")
        ready = (
            dict(ready_old)
            if ready_old
            else _cond(old, "Ready", False, "Progressing", message, generation, now)
        )
    else:
        ready = _cond(old, "Ready", reason in OK_REASONS, reason, message, generation, now)
    out["conditions"] = [
        ready,
        _cond(old, "Reconciling", progressing, reason if progressing else "Idle",
              message if progressing else "no sync in progress", generation, now),
        _cond(old, "Stalled", reason in STALLED_REASONS,
              reason if reason in STALLED_REASONS else "NotStalled",
              message if reason in STALLED_REASONS else "nothing waits for a person",
              generation, now),
    ]  # fmt: skip
    if not progressing:
        out["history"] = _history(cur.get("history") or [], result, now)
    return out


def _history(history: list[Mapping[str, Any]], result: Result, now: str) -> list[dict[str, Any]]:
    """Newest first; a new entry only when the revision or the outcome differs from the last."""
    entry = {
        "revision": result.attempted or (history[0].get("revision") if history else "") or "",
        "reason": result.reason,
        "time": now,
        "message": result.message[:300],
    }
    if history and all(history[0].get(k) == entry[k] for k in ("revision", "reason")):
        return [dict(h) for h in history]
    return [entry, *(dict(h) for h in history)][:HISTORY_MAX]


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    current = current or {}
    keys = set(desired) | {k for k in current if k in _OWNED}
    return any(current.get(k) != desired.get(k) for k in keys)


_OWNED = {
    "observedGeneration", "webhookPath", "lastAppliedRevision", "lastAttemptedRevision",
    "inventory", "modules", "heldRevision", "lastHandledRequestedAt", "history", "conditions",
}  # fmt: skip
