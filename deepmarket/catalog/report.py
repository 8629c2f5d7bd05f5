"""Problems rendered for people (text), programs (json) and GitHub Actions (annotations)."""

from __future__ import annotations

import json

from deepmarket.catalog.model import Problem

FORMATS = ("text", "json", "github")


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def github_line(problem: Problem) -> str:
    """A workflow command that annotates the file in the pull request's diff."""
    props = [f"file={_gh_property(problem.file)}"]
    if problem.line is not None:
        props.append(f"line={problem.line}")
        if problem.col is not None:
            props.append(f"col={problem.col}")
    if problem.path:
        props.append(f"title={_gh_property(problem.path)}")
    kind = "error" if problem.is_error else "warning"
    return f"::{kind} {','.join(props)}::{_gh_data(problem.message)}"


def render(problems: list[Problem], fmt: str, *, checked: int) -> str:
    """The whole report; `checked` is how many module files were looked at."""
    if fmt == "json":
        return json.dumps(
            {
                "valid": not any(p.is_error for p in problems),
                "checked": checked,
                "problems": [
                    {
                        "file": p.file,
                        "line": p.line,
                        "col": p.col,
                        "path": p.path,
                        "message": p.message,
                        "severity": p.severity,
                    }
                    for p in problems
                ],
            },
            indent=2,
        )
    if fmt == "github":
        return "\n".join(github_line(p) for p in problems)
    return "\n".join(str(p) for p in problems)


def summary(problems: list[Problem], checked: int) -> str:
    """One closing line for people."""
    errors = [p for p in problems if p.is_error]
    warnings = len(problems) - len(errors)
    warned = ""
    if warnings:
        warned = (
            f"{warnings} warning{'s' if warnings != 1 else ''} "
            "(errors in CI and with --strict: fix them before opening a pull request)"
        )
    if not errors:
        valid = f"ok: {checked} module{'s' if checked != 1 else ''} valid"
        return f"{valid}; {warned}" if warned else valid
    files = len({p.file for p in errors})
    n = len(errors)
    line = f"{n} problem{'s' if n != 1 else ''} in {files} file{'s' if files != 1 else ''}"
    return f"{line}; {warned}" if warned else line
