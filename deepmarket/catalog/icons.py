"""Whether an icon is inert. Raster images shown in <img> cannot run code; an SVG opened on
its own from the marketplace's origin runs its scripts there, so active SVG is refused."""

from __future__ import annotations

import re

_ACTIVE_SVG = re.compile(
    rb"<script|<foreignobject|<iframe|<embed|<object|<!entity|javascript:|\son[a-z]+\s*=",
    re.IGNORECASE,
)


def icon_is_safe(name: str, content: bytes) -> bool:
    """True unless `name` is an SVG whose `content` can run code or pull in other documents."""
    if not name.lower().endswith(".svg"):
        return True
    return _ACTIVE_SVG.search(content) is None
