"""Overlay a user's partial pod template on the generated one (pure).

Maps merge key by key; lists whose items all carry a `name` (containers, volumes, env, ports)
merge item by item on that name, new names appended; any other list is replaced whole.
"""

from __future__ import annotations

import copy
from typing import Any


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def overlay(base: Any, patch: Any) -> Any:
    """`patch` merged over `base`; neither argument is modified."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = overlay(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        out_list = [copy.deepcopy(i) for i in base]
        index = {item["name"]: n for n, item in enumerate(out_list)}
        for item in patch:
            if item["name"] in index:
                n = index[item["name"]]
                out_list[n] = overlay(out_list[n], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)
