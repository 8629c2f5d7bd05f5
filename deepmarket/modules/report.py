"""Print `module check` results: a table for people, JSON for machines."""

from __future__ import annotations

import json

from deepmarket.modules.conformance import Check, passed

__all__ = ["as_json", "as_text", "passed"]


def as_json(url: str, checks: list[Check]) -> str:
    return json.dumps(
        {"url": url, "passed": passed(checks), "checks": [c.as_dict() for c in checks]},
        indent=2,
    )


def as_text(url: str, checks: list[Check]) -> str:
    width = max(len("CHECK"), *(len(c.name) for c in checks))
    lines = [f"DEEPaaS conformance of {url}", f"{'CHECK':<{width}}  RESULT  DETAIL"]
    lines += [f"{c.name:<{width}}  {c.status.upper():<6}  {c.detail}" for c in checks]
    failed = [c.name for c in checks if c.status == "fail"]
    lines.append(
        f"FAILED: {len(failed)} of {len(checks)} checks ({', '.join(failed)})"
        if failed
        else f"PASSED: {sum(c.status == 'pass' for c in checks)} of {len(checks)} checks"
    )
    return "\n".join(lines)
