"""`deepmarket new` and `deepmarket import`: what authors run to add a module."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from catalog_factory import make_catalog

from deepmarket.catalog import load_catalog, validate_catalog
from deepmarket.catalog.importers import convert, detect, from_ai4os_v2, from_deep_v1
from deepmarket.catalog.scaffold import append_to_index, module_scaffold
from deepmarket.cli import main
from deepmarket.errors import UsageError, UserError

DATA = Path(__file__).with_name("data") / "import"
V1 = DATA / "deep-v1-plants-metadata.json"
V2_YAML = DATA / "ai4os-v2-mods-ai4-metadata.yml"
V2_JSON = DATA / "ai4os-v2-semseg-ai4-metadata.json"

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


def load_json(path):
    return json.loads(path.read_text())


def test_detect_formats():
    assert detect(load_json(V1)) == "v1"
    assert detect(load_json(V2_JSON)) == "v2"
    with pytest.raises(UserError, match="cannot tell the metadata format"):
        detect({"name": "x"})


def test_v1_mapping_keeps_everything_or_says_why():
    imported = from_deep_v1(load_json(V1))
    data = imported.data
    assert imported.id == "plants-classification-tf"
    assert data["libraries"] == ["TensorFlow"]
    assert data["categories"] == ["trainable", "inference", "pre-trained"]
    assert data["tasks"] == ["Computer Vision", "Classification"]
    assert data["tags"] == ["image classification", "plants", "biodiversity", "deep learning"]
    assert data["license"] == "Apache-2.0"
    assert data["dates"] == {"created": "2019-01-01"}
    assert data["description"].startswith("Provides a tool to identify plant species")
    assert data["links"]["source_code"] == "https://github.com/deephdc/plant-classification-tf"
    assert data["links"]["x-dockerfile_repo"].endswith("DEEP-OC-plants-classification-tf")
    assert data["runtime"]["train"] is True
    notes = "\n".join(imported.notes)
    for expected in (
        "not mapped: tosca",
        "not mapped: continuous_integration",
        "keyword 'docker' dropped",
        "has no version: pass --image",
        "runtime.model guessed",
    ):
        assert expected in notes


def test_v2_mapping():
    imported = from_ai4os_v2(load_json(V2_JSON), licence="Apache-2.0")
    data = imported.data
    assert imported.id == "semseg-vaihingen"
    assert data["categories"] == ["inference", "pre-trained", "trainable"]
    assert data["doi"] == "10.5281/zenodo.3523318"
    assert data["tags"][0] == "semantic segmentation"
    assert data["resources"]["training"]["gpu"] == 1
    assert "self" not in data["links"]
    notes = "\n".join(imported.notes)
    assert "not mapped: links.self" in notes and "not mapped: provenance" in notes


def test_import_v1_writes_an_entry_that_says_why_it_is_not_valid_yet(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    code = main(["import", str(V1), "--root", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 1
    assert "import: not mapped: tosca (no deepmarket equivalent)" in err
    assert "does not validate yet" in err
    assert "runtime.image: 'deephdc/deep-oc-plants-classification-tf' is not pinned" in err


@pytest.mark.parametrize(
    ("source", "extra", "module_id"),
    [
        (
            V1,
            ["--image", "deephdc/deep-oc-plants-classification-tf:2.1.0"],
            "plants-classification-tf",
        ),
        (V2_YAML, ["--image", "ai4oshub/mods:1.4.0", "--license", "MIT"], "mods"),
        (
            V2_JSON,
            [
                "--image",
                "ai4oshub/ai4os-semseg-vaihingen:0.3.0",
                "--license",
                "Apache-2.0",
                "--id",
                "aerial-segmentation",
            ],
            "aerial-segmentation",
        ),
    ],
)
def test_import_result_validates(tmp_path, capsys, source, extra, module_id):
    make_catalog(tmp_path, ["plants"])
    code = main(["import", str(source), "--root", str(tmp_path), *extra])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert f"catalog/{module_id}/module.yml is valid" in err
    catalog = load_catalog(tmp_path)
    module = catalog.get(module_id)
    assert [m.id for m in catalog][-1] == module_id
    text = (tmp_path / "catalog" / module_id / "module.yml").read_text()
    assert text.startswith(f"# Imported from {source.name} by `deepmarket import`. Review:")
    assert module.trainable == ("trainable" in module.categories)


def test_import_dry_run_writes_nothing(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    before = (tmp_path / "modules.yml").read_text()
    assert main(["import", str(V2_YAML), "--dry-run", "--root", str(tmp_path)]) == 0
    out, _ = capsys.readouterr()
    assert "id: mods\n" in out and "categories: [trainable, inference, pre-trained]" in out
    assert (tmp_path / "modules.yml").read_text() == before
    assert not (tmp_path / "catalog" / "mods").exists()


def test_import_refuses_unreadable_sources(tmp_path, capsys):
    bad = tmp_path / "metadata.json"
    bad.write_bytes(b'{"title": "x", "title": "y", "sources": {}}')
    assert main(["import", str(bad), "--dry-run"]) == 1
    assert "duplicate key 'title'" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing.json")]) == 2
    assert "file does not exist" in capsys.readouterr().err


def test_convert_dispatches():
    assert convert(load_json(V1)).id == "plants-classification-tf"
