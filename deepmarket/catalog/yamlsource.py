"""Turn the bytes of a catalog YAML file into plain data plus the position of every node.

Catalog files come from pull requests, so this treats them as hostile: cheap byte-level checks
(size, encoding, BOM, control characters, tab indentation) run before any YAML parsing, and the
tree is built here from parser *events* rather than by a YAML constructor, so that

- nothing but the YAML core schema's plain types is ever constructed (no `!!python/...` tags),
- nesting depth and alias expansion are counted while building, and refused past a limit
  (a billion-laughs file stops after a few hundred events),
- duplicate keys are reported with both positions instead of silently overwriting,
- dates stay the strings the author wrote (JSON-compatible data, checked by format later).

All positions are 1-based (line, column), as editors and GitHub annotations count them.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver

from deepmarket.catalog.model import Problem

try:  # libyaml through ruamel's maintained binding: ~15x faster than the pure-Python parser
    from _ruamel_yaml_clibz import CParser as _CParser  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - exercised only where the wheel is unavailable
    _CParser = None

Path_ = tuple[str | int, ...]
Pos = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {
    _TAG + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}
_TAB_INDENT = re.compile(r"^[ ]*\t", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


@dataclass(frozen=True)
class Limits:
    """Bounds that keep a hostile file from costing more than a normal one."""

    max_bytes: int = 256 * 1024
    max_depth: int = 32
    max_nodes: int = 20_000  # after alias expansion


@dataclass
class ParsedYaml:
    """A parsed file: `data` is None when `problems` made it unusable."""

    file: str
    data: Any = None
    problems: list[Problem] = field(default_factory=list)
    values: dict[Path_, Pos] = field(default_factory=dict)  # where each node's value starts
    keys: dict[Path_, Pos] = field(default_factory=dict)  # where each mapping key starts

    def pos(self, path: Path_, *, key: bool = False) -> Pos | tuple[None, None]:
        """The position of `path` (its key when asked and known), else the nearest ancestor's."""
        path = tuple(path)
        while True:
            if key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return (None, None)
            path = path[:-1]

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        line, col = self.pos(path, key=key)
        return Problem(self.file, line, col, dotted(path), message)


def dotted(path: Path_) -> str:
    """("links", "source_code") -> "links.source_code"; ("tasks", 1) -> "tasks[1]"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def human_size(n: int) -> str:
    """1000 -> '1000 B', 262144 -> '256 KiB', 8388608 -> '8 MiB'."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or n % 1024:
            return f"{n} {unit}"
        n //= 1024
    return f"{n} GiB"


def _line_col(text: str, offset: int) -> Pos:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def precheck(raw: bytes, file: str, limits: Limits) -> tuple[str | None, Problem | None]:
    """Byte-level checks that are cheap and stop hostile input before the parser sees it."""
    if len(raw) > limits.max_bytes:
        return None, Problem(
            file, None, None, "", f"file is larger than the {human_size(limits.max_bytes)} limit"
        )
    if raw.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return None, Problem(
            file, 1, 1, "", "file starts with a byte-order mark; save it as UTF-8 without BOM"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8", errors="replace")
        line, col = _line_col(good, len(good))
        return None, Problem(
            file,
            line,
            col,
            "",
            f"file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
        )
    if not text.strip():
        return None, Problem(file, 1, 1, "", "file is empty")
    bad = _CONTROL.search(text)
    if bad:
        line, col = _line_col(text, bad.start())
        return None, Problem(
            file,
            line,
            col,
            "",
            f"file contains control character U+{ord(bad.group()):04X} (binary data?)",
        )
    tab = _TAB_INDENT.search(text)
    if tab:
        line, col = _line_col(text, tab.end() - 1)
        return None, Problem(
            file, line, col, "", "tab used for indentation; YAML indents with spaces only"
        )
    return text, None


class _Refused(Exception):
    """Building stopped: the file exceeds a limit or uses a construct catalog files forbid."""

    def __init__(self, pos: Pos, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


_resolver = VersionedResolver(version=(1, 2))


def _tag_refusal(tag: str) -> str:
    shown = str(tag).replace(_TAG, "!!")
    return f"tag {shown!r} is not allowed in catalog files (only plain YAML data)"


@functools.lru_cache(maxsize=4096)
def _implicit_tag(value: str) -> str:
    return str(_resolver.resolve(ScalarNode, value, (True, False)))


def _mark(event: Any) -> Pos:
    return (event.start_mark.line + 1, event.start_mark.column + 1)


def _scalar(event: ScalarEvent, pos: Pos) -> Any:
    """Resolve a scalar by the YAML 1.2 core schema; only JSON-compatible values come out."""
    value = event.value
    tag = event.tag
    if tag in (None, "!"):
        if event.style not in (None, ""):  # quoted or block scalar: always a string
            return value
        tag = _implicit_tag(value)
    if tag not in _ALLOWED_TAGS:
        raise _Refused(pos, _tag_refusal(tag))
    kind = tag[len(_TAG) :]
    if kind in ("str", "timestamp"):  # dates stay text; the schema checks their format
        return value
    if kind == "null":
        return None
    if kind == "bool":
        return value.lower() in ("true", "yes", "on", "y")
    try:
        if kind == "int":
            digits = value.replace("_", "")
            try:
                return int(digits, 0)
            except ValueError:
                return int(digits, 10)
        low = value.lower().replace("_", "")
        if low.endswith(("inf", "nan")):
            raise _Refused(pos, f"{value!r}: infinite and NaN numbers are not allowed")
        return float(low)
    except ValueError:
        raise _Refused(pos, f"{value!r} is not a valid {kind}") from None


def _events(text: str) -> Any:
    if _CParser is not None:
        parser = _CParser(text)
        get_event = parser.get_event
        try:
            while True:  # get_event alone: check_event would double the calls into C
                event = get_event()
                if event is None:
                    return
                yield event
        finally:
            parser.dispose()
    else:  # pragma: no cover
        from ruamel.yaml import YAML

        yield from YAML(typ="safe", pure=True).parse(text)


def _build(text: str, parsed: ParsedYaml, limits: Limits) -> Any:
    """Build plain data from parser events with an explicit stack (no recursion)."""
    anchors: dict[str, tuple[Any, int]] = {}
    # each frame: [container, path, pending_key, key_pos, first_key_pos, anchor, nodes_at_start]
    stack: list[list[Any]] = []
    nodes = 0
    root: Any = None
    documents = 0

    def attach(value: Any, pos: Pos, anchor: str | None, size: int) -> None:
        nonlocal root
        if anchor:
            anchors[anchor] = (value, size)
        if not stack:
            root = value
            parsed.values[()] = pos
            return
        frame = stack[-1]
        container, path = frame[0], frame[1]
        if isinstance(container, list):
            child = (*path, len(container))
            container.append(value)
            parsed.values.setdefault(child, pos)
            return
        if frame[2] is None:  # this value is a key
            if not isinstance(value, str):
                raise _Refused(pos, "mapping keys must be plain strings")
            frame[2], frame[3] = value, pos
            return
        key, key_pos = frame[2], frame[3]
        frame[2] = None
        child = (*path, key)
        if key in container:
            first = frame[4][key]
            parsed.problems.append(
                Problem(
                    parsed.file,
                    key_pos[0],
                    key_pos[1],
                    dotted(child),
                    f"duplicate key {key!r} (first defined at line {first[0]})",
                )
            )
            return
        container[key] = value
        frame[4][key] = key_pos
        parsed.keys.setdefault(child, key_pos)
        parsed.values.setdefault(child, pos)

    def count(pos: Pos, n: int = 1) -> None:
        nonlocal nodes
        nodes += n
        if nodes > limits.max_nodes:
            raise _Refused(
                pos,
                f"document expands to more than {limits.max_nodes} nodes "
                "(aliases that multiply content are refused)",
            )

    for event in _events(text):
        if isinstance(event, ScalarEvent):
            pos = _mark(event)
            count(pos)
            attach(_scalar(event, pos), pos, event.anchor, 1)
        elif isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            pos = _mark(event)
            if event.tag not in (None, "!", _TAG + "map", _TAG + "seq"):
                raise _Refused(pos, _tag_refusal(event.tag))
            if len(stack) >= limits.max_depth:
                raise _Refused(pos, f"nesting is deeper than {limits.max_depth} levels")
            count(pos)
            is_map = isinstance(event, MappingStartEvent)
            if stack and isinstance(stack[-1][0], dict) and stack[-1][2] is None:
                raise _Refused(pos, "mapping keys must be plain strings")
            path: Path_ = ()
            if stack:
                top = stack[-1]
                path = (*top[1], len(top[0])) if isinstance(top[0], list) else (*top[1], top[2])
            stack.append([{} if is_map else [], path, None, None, {}, event.anchor, nodes, pos])
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            frame = stack.pop()
            attach(frame[0], frame[7], frame[5], nodes - frame[6] + 1)
        elif isinstance(event, AliasEvent):
            pos = _mark(event)
            if event.anchor not in anchors:
                raise _Refused(pos, f"alias *{event.anchor} refers to no anchor")
            value, size = anchors[event.anchor]
            count(pos, size)
            attach(value, pos, None, size)
        elif isinstance(event, DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _Refused(_mark(event), "more than one YAML document; use a single document")
        elif isinstance(event, StreamEndEvent):
            break
    return root


_KEY_VALUE = re.compile(r"^(\s*(?:- )?)([^\s:#'\"][^:#]*?):\s+(.*?)\s*(#.*)?$")


def syntax_hint(text: str, line: int | None, what: str) -> str:
    """How to fix the commonest YAML mistakes of module authors, from the offending line."""
    if line is None or "mapping values are not allowed" not in what:
        return ""
    lines = text.splitlines()
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    m = _KEY_VALUE.match(source)
    if not m or not m.group(3) or m.group(3)[0] in "'\"[{|>":
        return "; a value that contains ': ' must be put in quotes"
    quoted = "'" + m.group(3).replace("'", "''") + "'"
    return f"; the value contains ': ', so put it in quotes: {m.group(2)}: {quoted}"


def parse_yaml(raw: bytes, file: str, limits: Limits = Limits()) -> ParsedYaml:
    """Parse one catalog file. Problems are collected, never raised."""
    parsed = ParsedYaml(file)
    text, problem = precheck(raw, file, limits)
    if problem is not None:
        parsed.problems.append(problem)
        return parsed
    assert text is not None
    try:
        parsed.data = _build(text, parsed, limits)
    except _Refused as exc:
        parsed.problems.append(Problem(file, exc.pos[0], exc.pos[1], "", exc.message))
        parsed.data = None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = (
            " ".join(
                str(part)
                for part in (getattr(exc, "problem", None), getattr(exc, "context", None))
                if part
            )
            or str(exc).splitlines()[0]
        )
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        hint = syntax_hint(text, line, what)
        parsed.problems.append(Problem(file, line, col, "", f"YAML syntax error: {what}{hint}"))
        parsed.data = None
    except RecursionError:  # pragma: no cover - depth is limited above; belt and braces
        parsed.problems.append(Problem(file, None, None, "", "YAML nesting is too deep"))
        parsed.data = None
    if parsed.data is None and not parsed.problems:
        parsed.problems.append(Problem(file, 1, 1, "", "file has no content (only comments?)"))
    return parsed
