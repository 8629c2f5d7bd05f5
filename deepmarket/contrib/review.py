"""What the catalog's validate workflow tells a pull request: annotations on the diff,
the job summary, and the comment. Pure: problems and facts in, texts out.

GitHub shows at most 10 error annotations per step (and 10 warnings), so the most useful
come first: problems in the modules the pull request changes before any elsewhere, files
that cannot even be read before schema errors, errors before warnings, then file order.
The complete list always goes to the job summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from deepmarket.catalog.model import Problem
from deepmarket.catalog.report import github_line

ANNOTATION_LIMIT = 10  # GitHub: "up to 10 error annotations ... per step"
MARKER = "<!-- deepmarket-review -->"
INDEX_FILE = "modules.yml"

# Words in a message that mean the file could not be read as data at all: fixing those
# first often makes the rest disappear.
_UNREADABLE = ("YAML", "cannot be read", "duplicate key", "tab", "BOM", "binary", "too large")


def changed_modules(paths: Iterable[str]) -> list[str]:
    """Module ids whose folder a pull request touches (from its changed file paths)."""
    ids = set()
    for path in paths:
        parts = path.split("/")
        if len(parts) >= 3 and parts[0] == "catalog":
            ids.add(parts[1])
    return sorted(ids)


def module_of(problem: Problem) -> str | None:
    parts = problem.file.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "catalog" else None


def rank(problems: Sequence[Problem], changed: Sequence[str]) -> list[Problem]:
    """Most useful first (see the module's docstring); stable within equal ranks."""

    def key(p: Problem) -> tuple:
        mine = module_of(p) in changed or (
            p.file == INDEX_FILE and any(c in p.message for c in changed)
        )
        unreadable = any(word in p.message for word in _UNREADABLE) and p.line is not None
        return (not p.is_error, not mine, not unreadable, p.file, p.line or 0, p.col or 0)

    return sorted(problems, key=key)


@dataclass(frozen=True)
class Annotations:
    lines: list[str]  # workflow commands, at most ANNOTATION_LIMIT errors
    hidden: int  # problems shown only in the job summary


def annotations(ranked: Sequence[Problem], limit: int = ANNOTATION_LIMIT) -> Annotations:
    errors = [p for p in ranked if p.is_error]
    warnings = [p for p in ranked if not p.is_error]
    shown = errors[:limit] + warnings[:limit]
    lines = [github_line(p) for p in shown]
    hidden = len(ranked) - len(shown)
    if hidden:
        lines.append(
            f"::notice title=deepmarket review::{hidden} more problem"
            f"{'s' if hidden != 1 else ''} than GitHub shows as annotations: the job summary "
            "lists every one"
        )
    return Annotations(lines, hidden)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def problem_table(problems: Sequence[Problem]) -> str:
    rows = ["| | where | field | problem |", "| --- | --- | --- | --- |"]
    for p in problems:
        where = p.file + (f":{p.line}" if p.line else "") + (f":{p.col}" if p.col else "")
        icon = "❌" if p.is_error else "⚠️"
        rows.append(f"| {icon} | `{_cell(where)}` | {_cell(p.path) or '—'} | {_cell(p.message)} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class Preview:
    built: bool
    message: str  # why it was not built, or where it is
    pages: dict[str, bool]  # module id -> has a page in the built site


def summary(ranked: Sequence[Problem], changed: Sequence[str], preview: Preview) -> str:
    """The job summary (Markdown): verdict, the complete problem list, the preview."""
    errors = sum(p.is_error for p in ranked)
    verdict = (
        "✅ The catalog is valid."
        if not errors
        else f"❌ {errors} error{'s' if errors != 1 else ''} to fix."
    )
    parts = [
        "## deepmarket review",
        "",
        verdict,
        "",
        f"Changed modules: {', '.join(f'`{c}`' for c in changed) or 'none'}",
        "",
    ]
    if ranked:
        parts += [
            f"### Every problem ({len(ranked)}), most useful first",
            "",
            problem_table(ranked),
            "",
        ]
    parts += ["### Marketplace preview", "", preview.message, ""]
    return "\n".join(parts)


def comment(
    ranked: Sequence[Problem],
    changed: Sequence[str],
    preview: Preview,
    *,
    run_url: str | None = None,
) -> str:
    """The pull request comment: one line per changed module, the first problems, and
    where the preview is. Updated in place on each run (found by MARKER)."""
    lines = [MARKER, "### deepmarket review", ""]
    for module_id in changed or []:
        mine = [p for p in ranked if module_of(p) == module_id and p.is_error]
        page = preview.pages.get(module_id)
        if mine:
            lines.append(f"- ❌ `{module_id}`: {len(mine)} problem{'s' if len(mine) != 1 else ''}")
        elif page:
            lines.append(
                f"- ✅ `{module_id}`: valid; its marketplace page builds (`modules/{module_id}/`)"
            )
        elif module_id in preview.pages:
            lines.append(f"- ✅ `{module_id}`: valid, but the preview has no page for it")
        else:
            lines.append(f"- ✅ `{module_id}`: valid (removed from the catalog)")
    if not changed:
        lines.append("- no module folder changed")
    others = [p for p in ranked if p.is_error and module_of(p) not in changed]
    if others:
        lines.append(
            f"- ❌ {len(others)} problem{'s' if len(others) != 1 else ''} elsewhere in the catalog"
        )
    errors = [p for p in ranked if p.is_error]
    if errors:
        lines += ["", problem_table(errors[:ANNOTATION_LIMIT])]
        if len(errors) > ANNOTATION_LIMIT:
            lines.append(f"\n…and {len(errors) - ANNOTATION_LIMIT} more in the job summary.")
    lines += ["", f"**Preview:** {preview.message}"]
    if run_url:
        lines += [
            "",
            f"[Checks run]({run_url}): annotations, the job summary and the preview artifact.",
        ]
    lines += [
        "",
        "Fix locally with `deepmarket validate`, then `deepmarket submit` again: it updates this "
        "pull request.",
    ]
    return "\n".join(lines) + "\n"
