"""Does an observed object already hold what we want? (pure)

The apiserver adds defaults and canonicalises quantities ("2048Mi" is stored as "2Gi"), so the
test is semantic containment: every field we set must be present with an equal value; fields
we do not set (defaults, other managers' fields, status) are ignored. Lists of named items
(containers, env, ports, volumes) are matched by name; other lists must match element-wise.

Containment cannot see a field we *stopped* setting, so every child also carries the hash of
the whole desired object (`APPLIED_HASH`); a changed spec changes the hash and forces an apply,
in which server-side apply drops the fields we no longer own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIX = {
    "": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
    "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def parse_quantity(value: object) -> Decimal | None:
    """A Kubernetes resource quantity as a number, or None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    m = _QUANTITY.match(str(value))
    if not m:
        return None
    try:
        return Decimal(m.group(1)) * _SUFFIX[m.group(2) or ""]
    except InvalidOperation:
        return None


def _leaf_equal(want: object, have: object) -> bool:
    if want == have:
        return True
    if isinstance(want, str | int) and isinstance(have, str | int):
        a, b = parse_quantity(want), parse_quantity(have)
        # Quantities and int-or-string ports: "8" == 8, "2048Mi" == "2Gi".
        return a is not None and a == b
    return False


def _named(items: list[Any]) -> bool:
    return all(isinstance(i, dict) and "name" in i for i in items)


def contains(have: Any, want: Any) -> bool:
    """True when `have` (observed) holds every field of `want` (desired) with an equal value."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        return all(k in have and contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        if not isinstance(have, list):
            return False
        if want and _named(want) and _named(have):
            by_name = {i["name"]: i for i in have}
            return all(i["name"] in by_name and contains(by_name[i["name"]], i) for i in want)
        return len(want) == len(have) and all(
            contains(h, w) for h, w in zip(have, want, strict=True)
        )
    return _leaf_equal(want, have)


APPLIED_HASH = "deepmarket.dev/applied-hash"


def content_hash(obj: Any) -> str:
    """Stable short hash of a JSON-compatible value."""
    raw = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def with_hash(desired: dict[str, Any]) -> dict[str, Any]:
    """`desired` plus the annotation that records what it was (the input is not modified)."""
    out = dict(desired)
    meta = dict(out.get("metadata", {}))
    meta["annotations"] = {**meta.get("annotations", {}), APPLIED_HASH: content_hash(desired)}
    out["metadata"] = meta
    return out


def up_to_date(observed: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether applying `desired` (already passed through `with_hash`) would change nothing."""
    return observed is not None and contains(observed, desired)


def resource_version(obj: dict[str, Any] | None) -> int:
    """metadata.resourceVersion as an integer for newest-wins ordering (-1 when unknown).

    Kubernetes calls it opaque; every apiserver backed by etcd uses the etcd revision, which
    only grows. Only used to pick the newer of two copies of the same object.
    """
    if not obj:
        return -1
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", -1))
    except (TypeError, ValueError):
        return -1


def newest(*copies: dict[str, Any] | None) -> dict[str, Any] | None:
    """The most recent of several copies of one object (watch cache vs our own write response)."""
    present = [c for c in copies if c]
    if not present:
        return None
    return max(present, key=resource_version)


def controller_of(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The owner reference marked `controller: true`, if any (Kubernetes allows one)."""
    for ref in (obj or {}).get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def controlled_by(obj: Mapping[str, Any] | None, owner_uid: str) -> bool:
    """Whether `obj`'s controller owner reference is the object with uid `owner_uid`."""
    ref = controller_of(obj)
    return bool(ref) and ref.get("uid") == owner_uid  # type: ignore[union-attr]


# --- hand edits (drift) by other field managers -------------------------------------------------

# Paths in a child's spec that others may own: the replica count (an HPA, `kubectl scale`
# through /scale, our own hand-over manager) and the pod template's metadata (`kubectl rollout
# restart` stamps an annotation there).
_TOLERATED = (("spec", "replicas"), ("spec", "template", "metadata"))


def foreign_entries(obj: Mapping[str, Any], own_managers: frozenset[str]) -> list[dict[str, Any]]:
    """managedFields entries that are someone else's edits of the object itself (not of its
    status or scale subresources): what `kubectl edit/patch/set`, or another tool, changed."""
    out = []
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") in own_managers or entry.get("subresource"):
            continue
        fields = (entry.get("fieldsV1") or {}).get("f:spec")
        if fields:
            out.append({"manager": entry.get("manager"), "fieldsV1": {"f:spec": fields}})
    return out


def _escape(token: object) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _match(items: list[Any], key: Mapping[str, Any]) -> int | None:
    for n, item in enumerate(items):
        if isinstance(item, dict) and all(_leaf_equal(v, item.get(k)) for k, v in key.items()):
            return n
    return None


def _foreign_removals(
    fields: Mapping[str, Any], live: Any, desired: Any, path: tuple[Any, ...], out: list[Any]
) -> None:
    for token, sub in fields.items():
        if token.startswith("f:"):
            name = token[2:]
            if not isinstance(live, dict) or name not in live:
                continue
            here = (*path, name)
            if any(here[: len(t)] == t for t in _TOLERATED):
                continue
            want = desired.get(name) if isinstance(desired, dict) else None
            if want is None:
                out.append((here, live[name]))  # a field we never set: theirs alone
            elif isinstance(sub, dict) and sub:
                _foreign_removals(sub, live[name], want, here, out)
        elif token.startswith("k:") and isinstance(live, list):
            try:
                key = json.loads(token[2:])
            except ValueError:
                continue
            n = _match(live, key)
            if n is None:
                continue
            want_n = _match(desired, key) if isinstance(desired, list) else None
            if want_n is None:
                out.append(((*path, n), live[n]))  # an item we do not want (a sidecar, an env)
            elif isinstance(sub, dict) and sub:
                _foreign_removals(sub, live[n], desired[want_n], (*path, n), out)


def revert_patch(
    observed: Mapping[str, Any], desired: Mapping[str, Any], own_managers: frozenset[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """A JSON patch removing what other managers added to `observed` that `desired` lacks, and
    the paths it removes. Fields we set are restored by our own apply (force), not here.

    Each removal is guarded by a `test` of the value it removes, so a concurrent change makes
    the patch fail (and the reconcile retry) instead of removing the wrong list item."""
    found: list[tuple[tuple[Any, ...], Any]] = []
    for entry in foreign_entries(observed, own_managers):
        _foreign_removals(entry["fieldsV1"], observed, desired, (), found)
    unique: dict[tuple[Any, ...], Any] = {}
    for path, value in found:
        if not any(path[: len(p)] == p for p in unique if len(p) < len(path)):
            unique[path] = value
    # Remove list items from the highest index down, so earlier removals keep indices valid.
    ops: list[dict[str, Any]] = []
    for path in sorted(unique, key=_removal_order):
        pointer = "/" + "/".join(_escape(t) for t in path)
        ops.append({"op": "test", "path": pointer, "value": unique[path]})
        ops.append({"op": "remove", "path": pointer})
    shown = [
        ".".join(str(t) if not isinstance(t, int) else f"[{t}]" for t in p).replace(".[", "[")
        for p in unique
    ]
    return ops, shown


def _removal_order(path: tuple[Any, ...]) -> tuple[Any, ...]:
    # Same parent list: higher index first. Otherwise any stable order.
    return tuple((0, -t) if isinstance(t, int) else (1, str(t)) for t in path)
