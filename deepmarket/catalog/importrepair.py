"""Reading real metadata files whose syntax is slightly broken, where what the author meant
is certain.

Each repair is one narrow rule, applied only at the place the parser stopped, and reported as
a note naming the line; anything else stays a refusal with the parser's line and column.
Repairs keep every other line and column where it was, so later errors still point at the
author's file.

JSON (DEEP v1 `metadata.json`):
- a trailing comma before `]` or `}` is ignored;
- a missing comma between a value that ends one line and a string that starts the next (two
  description lines, or a member and the next key) is added: JSON has no other reading;
- double quotes inside a one-line text (`"summary": "… paper "Title" (…)",`) are read as part
  of the text when the line holds nothing else.

YAML (AI4OS v2 `ai4-metadata.yml`): the text of `title`, `summary` or `description` that YAML
cannot read (a plain value holding `: `, a quote inside a quoted value, lines of a block less
indented than its first line or not indented at all) is read as the lines between its key and
the next top-level key of the AI4OS schema, as written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

MAX_REPAIRS = 50

# Top-level keys of AI4OS v2 metadata: a line starting with one of them at column 0 ends the
# text before it.
V2_TOP_KEYS = (
    "metadata_version",
    "title",
    "summary",
    "description",
    "dates",
    "links",
    "tags",
    "tasks",
    "categories",
    "libraries",
    "data-type",
    "data_type",
    "resources",
    "license",
    "doi",
    "authors",
    "provenance",
)
TEXT_KEYS = ("title", "summary", "description")
_TOP_KEY = re.compile(rf"^({'|'.join(re.escape(k) for k in V2_TOP_KEYS)})[ \t]*:(?=\s|$)")
_INDENTED_KEY = re.compile(rf"^\s+({'|'.join(re.escape(k) for k in V2_TOP_KEYS)})[ \t]*:(?=\s|$)")
_BLOCK_HEADER = re.compile(r"^[|>][+-]?[1-9]?[+-]?\s*(#.*)?$")


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _previous_non_space(text: str, pos: int) -> int:
    p = pos - 1
    while p >= 0 and text[p] in " \t\r\n":
        p -= 1
    return p


def _unescaped_quotes(inner: str) -> bool:
    return re.search(r'(?<!\\)"', inner) is not None


def _json_repair(text: str, exc: json.JSONDecodeError) -> tuple[str, str] | None:
    """One repair at the place json stopped, or None when the intent is not certain."""
    pos = exc.pos
    here = text[pos] if pos < len(text) else ""
    prev = _previous_non_space(text, pos)
    if (
        exc.msg in ("Expecting value", "Expecting property name enclosed in double quotes")
        and here in "]}"
        and here
        and prev >= 0
        and text[prev] == ","
    ):
        line, col = _line_col(text, prev)
        return (
            text[:prev] + " " + text[prev + 1 :],
            f"line {line}:{col}: trailing comma before '{here}' ignored; delete it in the source",
        )
    if exc.msg != "Expecting ',' delimiter" or prev < 0:
        return None
    if here == '"' and "\n" in text[prev:pos]:
        line, col = _line_col(text, prev + 1)
        return (
            text[: prev + 1] + "," + text[prev + 1 :],
            f"line {line}:{col}: missing ',' between two values on separate lines added; "
            "add it in the source",
        )
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    line_text = text[start:end]
    match = re.match(r'^(\s*(?:"[^"\\]*"\s*:\s*)?")(.*)("\s*,?\s*)$', line_text)
    if not match or not _unescaped_quotes(match.group(2)):
        return None
    inner = match.group(2)
    if re.search(r'"\s*[,:]\s*"', inner):  # perhaps several members on one line: not certain
        return None
    fixed = match.group(1) + re.sub(r'(?<!\\)"', r"\"", inner) + match.group(3)
    line, _ = _line_col(text, pos)
    return (
        text[:start] + fixed + text[end:],
        f'line {line}: double quotes inside the text were read as part of it; write them as \\" '
        "in the source",
    )


def loads_json(text: str, hook: Callable[[list[tuple[str, Any]]], Any]) -> tuple[Any, list[str]]:
    """`json.loads` with the certain repairs above; the notes name each one. Raises the
    JSONDecodeError of the first place that cannot be repaired (its line and column are the
    source's)."""
    notes: list[str] = []
    current = text
    for _ in range(MAX_REPAIRS):
        try:
            return json.loads(current, object_pairs_hook=hook), notes
        except json.JSONDecodeError as exc:
            repaired = _json_repair(current, exc)
            if repaired is None:
                raise
            current, note = repaired
            notes.append(note)
    return json.loads(current, object_pairs_hook=hook), notes


def repair_yaml_text(text: str, error_line: int) -> tuple[str, str] | None:
    """The text with the value of the title/summary/description holding `error_line` (1-based)
    rewritten as one quoted line (blank lines keep the rest of the file in place), and a note;
    None when the error is elsewhere or the extent of the text is not certain."""
    lines = text.split("\n")
    index = min(error_line, len(lines)) - 1
    key_at = next((i for i in range(index, -1, -1) if _TOP_KEY.match(lines[i])), None)
    if key_at is None:
        return None
    key = _TOP_KEY.match(lines[key_at]).group(1)  # type: ignore[union-attr]
    if key not in TEXT_KEYS:
        return None
    end = next((i for i in range(key_at + 1, len(lines)) if _TOP_KEY.match(lines[i])), len(lines))
    body = lines[key_at + 1 : end]
    if any(_INDENTED_KEY.match(line) for line in body):
        return None  # a key indented by mistake: the text's end is not certain
    while body and (not body[-1].strip() or body[-1].startswith("#")):
        body.pop()  # blank lines and comments before the next key are not text
    rest = lines[key_at][_TOP_KEY.match(lines[key_at]).end() :].strip()  # type: ignore[union-attr]
    if _BLOCK_HEADER.match(rest):
        rest = ""
    quoted = rest[:1] in ("'", '"')
    if quoted and body:
        return None  # a quoted value running over several lines: where it ends is a guess
    if quoted:
        quote = rest[0]
        if len(rest) < 2 or rest[-1] != quote:
            return None
        rest = rest[1:-1].replace("''", "'") if quote == "'" else rest[1:-1]
    indent = next((len(x) - len(x.lstrip(" ")) for x in body if x.strip()), 0)
    kept = [x[min(indent, len(x) - len(x.lstrip(" "))) :].rstrip() for x in body]
    if key == "description":
        value = "\n".join([rest, *kept] if rest else kept).strip("\n")
    else:
        value = " ".join(x.strip() for x in [rest, *kept] if x.strip())
    if not value.strip():
        return None
    last = key_at + 1 + len(body)
    new = [*lines[:key_at], f"{key}: {json.dumps(value, ensure_ascii=False)}"]
    new += [""] * (end - key_at - 1) + lines[end:]
    span = f"line {key_at + 1}" if last == key_at + 1 else f"lines {key_at + 1}-{last}"
    how = "put it in quotes" if key != "description" else "indent it all under 'description: |-'"
    note = (
        f"{span}: the text of '{key}' is not valid YAML; it was read as written; {how} in the "
        "source"
    )
    return "\n".join(new), note
