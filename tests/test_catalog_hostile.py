"""Hostile module files: each gets one located line, no traceback, bounded time and memory.

Bounds are asserted structurally (the parser stops at a limit, the big file is never read),
not with timers.
"""

from __future__ import annotations

import tracemalloc

import pytest
from catalog_factory import make_catalog, module_text

from deepmarket.catalog import validate_catalog
from deepmarket.catalog.yamlsource import Limits, parse_yaml
from deepmarket.cli import main

BILLION_LAUGHS = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

CASES = {
    "alias bomb": (BILLION_LAUGHS, (5, 11), "expands to more than 20000 nodes"),
    "binary": (b"\x7fELF\x02\x01\x01\x00\x00\x00", (1, 1), "control character U+007F"),
    "not utf-8": (b"id: caf\xe9\n", (1, 8), "not UTF-8 text (byte 0xe9)"),
    "deep flow nesting": (b"id: " + b"[" * 10_000 + b"]" * 10_000, (1, 36), "deeper than 32"),
    "deep block nesting": (
        b"".join(b"- " for _ in range(10_000)) + b"x\n",
        (1, 65),
        "deeper than 32",
    ),
    "tabs": (b"id: x\nlinks:\n\tsource_code: https://x.org\n", (3, 1), "tab used for indentation"),
    "bom": (b"\xef\xbb\xbfid: x\n", (1, 1), "byte-order mark"),
    "utf-16": ("id: x\n".encode("utf-16"), (1, 1), "byte-order mark"),
    "empty": (b"", (1, 1), "file is empty"),
    "only comments": (b"# nothing\n", (1, 1), "no content"),
    "python object": (
        b"id: !!python/object/apply:os.system [echo pwned]\n",
        (1, 5),
        "tag '!!python/object/apply:os.system' is not allowed",
    ),
    "python name": (b"id: !!python/name:os.system ''\n", (1, 5), "is not allowed"),
    "custom tag directive": (
        b"%TAG !e! tag:example.com,2000:\n---\nid: !e!thing x\n",
        (3, 5),
        "is not allowed",
    ),
    "binary tag": (b"id: !!binary aGVsbG8=\n", (1, 5), "'!!binary' is not allowed"),
    "set": (b"tags: !!set {a, b}\n", (1, 7), "is not allowed"),
    "two documents": (b"id: x\n---\nid: y\n", (2, 1), "more than one YAML document"),
    "syntax error": (b"id: [x\n", (2, 1), "YAML syntax error: did not find expected ',' or ']'"),
    "non-string key": (b"? [a, b]\n: c\n", (1, 3), "mapping keys must be plain strings"),
    "infinity": (b"resources: {inference: {cpu: .inf}}\n", (1, 30), "infinite and NaN"),
    "top-level list": (b"- id: x\n", (1, 1), "expected a mapping"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_module_file(tmp_path, capsys, name):
    raw, (line, col), message = CASES[name]
    make_catalog(tmp_path, ["plants"])
    (tmp_path / "catalog" / "plants" / "module.yml").write_bytes(raw)
    tracemalloc.start()
    code = main(["validate", "--root", str(tmp_path)])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out, err = capsys.readouterr()
    assert code == 1
    assert out.count("\n") == 1 and "Traceback" not in out + err, out + err
    assert out.startswith(f"catalog/plants/module.yml:{line}:{col}: "), out
    assert message in out
    assert peak < 64 * 1024 * 1024


def test_duplicate_keys_are_errors_with_both_positions(tmp_path):
    make_catalog(tmp_path, ["plants"])
    text = module_text() + "title: Second title\n"
    (tmp_path / "catalog" / "plants" / "module.yml").write_text(text)
    [problem] = validate_catalog(tmp_path)
    assert str(problem) == (
        "catalog/plants/module.yml:32:1: title: duplicate key 'title' (first defined at line 2)"
    )


def test_a_100_mb_file_is_refused_without_reading_it(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    big = tmp_path / "catalog" / "plants" / "module.yml"
    with big.open("wb") as fh:  # sparse: 100 MB on paper, nothing on disk
        fh.truncate(100 * 1024 * 1024)
    tracemalloc.start()
    code = main(["validate", "--root", str(tmp_path)])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out, _ = capsys.readouterr()
    assert code == 1
    assert out == "catalog/plants/module.yml: file is larger than the 256 KiB limit\n"
    assert peak < 64 * 1024 * 1024  # reading the file would take 100 MB


def test_size_limit_also_applies_to_bytes_in_memory():
    parsed = parse_yaml(b"a: " + b"x" * 2000, "f.yml", Limits(max_bytes=1000))
    assert [str(p) for p in parsed.problems] == ["f.yml: file is larger than the 1000 B limit"]


def test_a_module_directory_that_is_a_symlink(tmp_path, tmp_path_factory, capsys):
    elsewhere = make_catalog(tmp_path_factory.mktemp("elsewhere"), ["plants"])
    make_catalog(tmp_path, ["seeds"])
    (tmp_path / "catalog" / "plants").symlink_to(elsewhere / "catalog" / "plants")
    (tmp_path / "modules.yml").write_text("modules:\n  - id: seeds\n  - id: plants\n")
    code = main(["validate", "--root", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 1
    assert out == ("catalog/plants: is a symlink; module directories must be real directories\n")


def test_a_module_file_that_is_a_symlink_or_fifo(tmp_path, capsys):
    import os

    make_catalog(tmp_path, ["plants", "seeds"])
    plants = tmp_path / "catalog" / "plants" / "module.yml"
    plants.unlink()
    plants.symlink_to(tmp_path / "catalog" / "seeds" / "module.yml")
    seeds = tmp_path / "catalog" / "seeds" / "module.yml"
    seeds.unlink()
    os.mkfifo(seeds)  # reading it would block forever; it must never be opened
    code = main(["validate", "--root", str(tmp_path)])
    out, _ = capsys.readouterr()
    assert code == 1
    assert out.splitlines() == [
        "catalog/plants/module.yml: is a symlink; catalog files must be regular files",
        "catalog/seeds/module.yml: is not a regular file",
    ]
