"""`deepmarket new`: what authors run to add a module (import: test_catalog_import.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from catalog_factory import make_catalog

from deepmarket.catalog import load_catalog, validate_catalog
from deepmarket.catalog.scaffold import append_to_index, module_scaffold
from deepmarket.cli import main
from deepmarket.errors import UsageError

INDEX = """\
# The catalog index.
# Keep this comment.
modules:
  - id: plants   # the first module
    deploy: true

  - id: seeds
    deploy: false  # not yet
# trailing comment
"""


def test_append_keeps_comments_order_and_layout():
    out = append_to_index(INDEX, "new-one")
    assert out.startswith(INDEX.split("# trailing comment")[0])
    assert "# trailing comment" in out
    assert out.rstrip().endswith("- id: new-one\n    deploy: false")
    assert out.index("id: seeds") < out.index("id: new-one")


@pytest.mark.parametrize("text", ["", "modules: []\n", "# only a comment\n"])
def test_append_starts_or_grows_an_empty_index(text):
    out = append_to_index(text, "first")
    assert "modules:\n  - id: first\n    deploy: false\n" in out


def test_scaffold_is_valid_and_marks_what_to_fill(tmp_path):
    files = module_scaffold("my-module", dt.date(2026, 1, 2))
    assert files["module.yml"].count("TODO") >= 8
    assert "dates: {created: 2026-01-02, updated: 2026-01-02}" in files["module.yml"]
    with pytest.raises(UsageError):
        module_scaffold("My_Module", dt.date(2026, 1, 2))


def test_new_creates_a_valid_entry_and_refuses_existing_or_invalid_ids(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    before = (tmp_path / "modules.yml").read_text()
    assert main(["new", "my-module", "--root", str(tmp_path)]) == 0
    after = (tmp_path / "modules.yml").read_text()
    assert (
        after.startswith(before)
        and after[len(before) :] == "  - id: my-module\n    deploy: false\n"
    )
    assert (tmp_path / "catalog" / "my-module" / "README.md").exists()
    # An untouched scaffold loads (the preview works) but every placeholder is a warning.
    found = validate_catalog(tmp_path)
    assert {p.severity for p in found} == {"warning"}
    assert {(p.file.rsplit("/", 1)[1], p.path) for p in found} == {
        ("README.md", ""),
        ("module.yml", "summary"),
        ("module.yml", "description"),
        ("module.yml", "links.source_code"),
        ("module.yml", "runtime.image"),
    }
    assert load_catalog(tmp_path).get("my-module").model_name == "my_module"
    capsys.readouterr()

    assert main(["new", "my-module", "--root", str(tmp_path)]) == 1
    assert "already listed" in capsys.readouterr().err
    (tmp_path / "catalog" / "stray").mkdir()
    assert main(["new", "stray", "--root", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    for bad in ("My-Module", "x-", "x" * 64, "a_b", "3d-pose"):
        assert main(["new", bad, "--root", str(tmp_path)]) == 2
        assert "invalid module id" in capsys.readouterr().err
    assert (tmp_path / "modules.yml").read_text() == after


def test_new_refuses_to_touch_a_broken_index(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    (tmp_path / "modules.yml").write_text("modules: [\n")
    assert main(["new", "other", "--root", str(tmp_path)]) == 1
    assert "fix it first" in capsys.readouterr().err
    assert not (tmp_path / "catalog" / "other").exists()
