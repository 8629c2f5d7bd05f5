"""The controller owner reference every resource puts on what it creates (plain data).

Children are ours by this reference's uid, never by labels (see README, operator guarantees).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepmarket.controller import DEEPMODULE_API


def controller_reference(
    owner: Mapping[str, Any], kind: str, *, block_owner_deletion: bool = True
) -> dict[str, Any]:
    """An ownerReference naming `owner` (a deepmarket.dev object of `kind`) as controller."""
    meta = owner["metadata"]
    return {
        "apiVersion": DEEPMODULE_API,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }
