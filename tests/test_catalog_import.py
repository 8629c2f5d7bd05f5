"""`deepmarket import` on what real DEEP v1 / AI4OS v2 files hold, and `deepmarket export`.

The fixtures under data/import/quirks/ are ours; each reproduces quirks found in the public
deephdc and ai4os-hub repositories (tab-indented JSON, raw HTML, bare image names, wrong
case, placeholder links, files migrated side by side, broken syntax).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from catalog_factory import make_catalog

from deepmarket.catalog import export, importclean, importio, importrepair, load_catalog
from deepmarket.catalog.importers import (
    ImportRefused,
    convert,
    detect,
    from_ai4os_v2,
    from_deep_v1,
    split_image,
)
from deepmarket.cli import main
from deepmarket.errors import UserError

DATA = Path(__file__).with_name("data") / "import"
QUIRKS = DATA / "quirks"
V1 = DATA / "deep-v1-plants-metadata.json"
V2_YAML = DATA / "ai4os-v2-mods-ai4-metadata.yml"
V2_JSON = DATA / "ai4os-v2-semseg-ai4-metadata.json"
ROOT = Path(__file__).resolve().parents[1]


def load_json(path):
    return json.loads(path.read_text())


def prepare(path, root, **kw):
    return importio.prepare(path, root, **kw)


# -- the converters on their own ------------------------------------------------------------


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
    assert data["license"] == "Apache-2.0"
    assert data["runtime"]["image"] == "deephdc/deep-oc-plants-classification-tf:cpu"
    assert data["links"]["x-dockerfile_repo"].endswith("DEEP-OC-plants-classification-tf")
    notes = "\n".join(imported.notes)
    for expected in (
        "not mapped: tosca",
        "keyword 'docker' dropped",
        "tag 'cpu' assumed",
        "runtime.model guessed as 'plant_classification_tf'",
    ):
        assert expected in notes


def test_v2_mapping():
    imported = from_ai4os_v2(load_json(V2_JSON), licence="Apache-2.0")
    data = imported.data
    assert imported.id == "semseg-vaihingen"
    assert data["doi"] == "10.5281/zenodo.3523318"
    assert "self" not in data["links"]
    notes = "\n".join(imported.notes)
    assert "not mapped: links.self" in notes and "not mapped: provenance" in notes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("deephdc/deep-oc-x", (None, "deephdc/deep-oc-x", None)),
        ("vllm/vllm-openai:latest", (None, "vllm/vllm-openai", "latest")),
        ("https://hub.docker.com/r/ai4oshub/x/tags", (None, "ai4oshub/x", None)),
        (" https://hub.docker.com/u/ai4os-hub/posenet-tf", (None, "ai4os-hub/posenet-tf", None)),
        (
            "registry.services.ai4os.eu/ai4os/cvat:1.2",
            ("registry.services.ai4os.eu", "ai4os/cvat", "1.2"),
        ),
        ("docker.io/library/python:3.12", (None, "python", "3.12")),
    ],
)
def test_image_names_in_every_spelling(value, expected):
    assert split_image(value) == expected


def test_html_becomes_markdown_or_is_dropped():
    text, notes = importclean.markdown_from_html(
        "a <img class='fit', width='50%', src='https://h.org/a.png'/> b "
        "<imgclass='fit' src=https://h.org/b.png> <img src='javascript:alert(1)'> "
        "<a href=https://h.org/x>link</a><br/><script>x</script>",
        "description",
    )
    assert (
        text
        == "a ![](https://h.org/a.png) b ![](https://h.org/b.png)  [link](https://h.org/x)  \nx"
    )
    assert "<" not in text
    assert any("rewritten as Markdown" in n for n in notes)
    assert any("an <img> without an http(s) src" in n and "<script>" in n for n in notes)


@pytest.mark.parametrize(
    "url",
    [
        "http://add-some-url-pointing-to-your-dataset.com",
        "https://demo_url",
        "https://example.com/my-model",
        "http://add-some-documentation.com",
        "https://github.com/add-some-url/x",
    ],
)
def test_placeholder_links_are_dropped_with_a_note(url):
    kept, notes = importclean.clean_url(url, "links.dataset")
    assert kept is None and "placeholder" in notes[0]


def test_real_links_are_kept():
    assert importclean.clean_url("https://zenodo.org/records/1", "x") == (
        "https://zenodo.org/records/1",
        [],
    )


def test_licence_values_are_normalised_and_unknown_ones_refused():
    meta = load_json(V1) | {"license": "mit license"}
    assert from_deep_v1(meta).data["license"] == "MIT"
    assert from_deep_v1(meta, licence="apache 2.0").data["license"] == "Apache-2.0"
    assert from_deep_v1(meta, licence="gplv3").data["license"] == "GPL-3.0-only"
    with pytest.raises(ImportRefused, match="--license 'Proprietary-ish' is not an SPDX"):
        from_deep_v1(meta, licence="Proprietary-ish")


# -- the quirks, file by file -----------------------------------------------------------


def test_v1_json_indented_with_tabs_imports_with_every_rewrite_reported(tmp_path):
    source = QUIRKS / "v1-tabs" / "metadata.json"
    assert "\t" in source.read_text()
    outcome = prepare(source, tmp_path)
    assert outcome.result == "valid", outcome.problems
    data = importio.read_metadata(source)
    imported = convert(data)
    out = imported.data
    assert out["id"] == "leaf-spotter"
    assert out["libraries"] == ["Other", "TensorFlow"] or out["libraries"] == ["TensorFlow"]
    assert out["tags"][:1] == ["theano"] and "deeplabv3-plus" in out["tags"]
    assert "deprecated" in out["tags"] and "image classification" in out["tags"]
    assert out["tasks"] == ["Computer Vision", "Classification"]
    assert out["data-type"] == ["Image"]
    assert set(out["categories"]) == {"inference", "trainable"}
    assert out["links"]["weights"] == "https://nc.example-cloud.eu/s/leafweights"
    assert "dataset" not in out["links"]
    assert out["license"] == "Apache-2.0"
    assert "<" not in out["description"]
    assert (
        "![](https://raw.githubusercontent.com/example-org/leaf/master/arch.png)"
        in out["description"]
    )
    notes = "\n".join(imported.notes)
    for expected in (
        "keyword 'library/theano' read as library Other and tag 'theano'",
        "keyword 'deprecated/services' read as tag 'deprecated' and category inference",
        "keyword 'DeepLabV3+' written as tag 'deeplabv3-plus'",
        "dataset_url: 'http://add-some-url-pointing-to-your-dataset.com' dropped: a placeholder",
        "training_files_url mapped to links.weights",
        "raw HTML dropped: <script>",
        "license 'Apache 2.0' written as the SPDX id 'Apache-2.0'",
    ):
        assert expected in notes


def test_v2_bare_image_name_licence_file_and_entry_point(tmp_path):
    outcome = prepare(QUIRKS / "v2-bare" / "ai4-metadata.yml", tmp_path)
    assert outcome.result == "valid", outcome.problems
    imported = convert(
        importio.read_metadata(QUIRKS / "v2-bare" / "ai4-metadata.yml"),
        context=importio.context_for(QUIRKS / "v2-bare" / "ai4-metadata.yml", None),
    )
    out = imported.data
    assert out["id"] == "whale-calls"
    assert out["links"]["docker_image"] == "https://hub.docker.com/r/ai4oshub/whale-calls"
    assert out["runtime"]["image"] == "ai4oshub/whale-calls:cpu"
    assert out["runtime"]["model"] == "whale_calls"  # from pyproject.toml
    assert out["license"] == "MIT"  # from LICENSE
    assert out["libraries"] == ["PyTorch"]
    assert out["tasks"] == ["Classification"] and out["data-type"] == ["Audio"]
    assert out["categories"] == ["trainable", "inference"]
    assert out["links"]["dataset"] == "https://zenodo.org/records/424242"
    assert "documentation" not in out["links"]
    assert out["tags"] == ["audio classification", "deeplabv3-plus", "yolo"]
    assert "javascript" not in out["description"] and "<img" not in out["description"]
    notes = "\n".join(imported.notes)
    for expected in (
        "libraries: 'Pytorch' written as 'PyTorch'",
        "links.documentation: 'https://demo_url' dropped: a placeholder link",
        "tasks: empty in the metadata; set to ['Classification'] from the tags",
        "license 'MIT' read from LICENSE",
        "runtime.model 'whale_calls' read from pyproject.toml",
        "not mapped: links.ai4_template",
        "category 'AI4 Inference' read as inference",
        "tag 'YOLO' written as tag 'yolo'",
    ):
        assert expected in notes


def test_a_tag_in_the_image_name_never_reaches_the_id_and_latest_is_refused(tmp_path):
    source = QUIRKS / "v2-tagged" / "ai4-metadata.yml"
    outcome = prepare(source, tmp_path)
    assert outcome.result == "refused"
    assert outcome.problems == [
        f"{source}: runtime.image: the metadata names 'vllm/vllm-openai:latest', which is not "
        "pinned to a version; pass --image vllm/vllm-openai:<version> (or @sha256:<digest>)"
    ]
    outcome = prepare(source, tmp_path, image="vllm/vllm-openai:v0.6.3")
    assert outcome.result == "valid", outcome.problems
    assert outcome.id == "vllm-openai"
    assert "id: vllm-openai\n" in outcome.text and "latest" not in outcome.text.split("id:")[1]
    assert "license: Apache-2.0" in outcome.text


def test_a_migrated_checkout_imports_its_v2_file_with_the_v1_licence(tmp_path):
    sources, skipped = importio.find_sources([QUIRKS / "migrated"])
    assert sources == [QUIRKS / "migrated" / "ai4-metadata.yml"]
    assert "metadata.json: skipped; the AI4OS v2 file beside it" in skipped[0]
    outcome = prepare(sources[0], tmp_path)
    assert outcome.result == "valid", outcome.problems
    assert "license: MIT" in outcome.text
    assert "model: seedcounter" in outcome.text  # setup.cfg's entry point
    assert "taken from the DEEP metadata.json beside the file" in "\n".join(outcome.notes)


def test_what_only_the_author_knows_is_one_line(tmp_path):
    broken = prepare(QUIRKS / "broken" / "metadata.json", tmp_path)
    assert broken.result == "refused"
    assert broken.problems == [
        f"{QUIRKS / 'broken' / 'metadata.json'}:3:31: invalid JSON: Expecting ',' delimiter; "
        "fix the file there (a '\"' inside a text must be written \\\", and values are "
        "separated by ',')"
    ]
    no_licence = prepare(QUIRKS / "no-licence" / "ai4-metadata.yml", tmp_path)
    assert no_licence.result == "refused"
    assert len(no_licence.problems) == 1
    assert (
        "license: AI4OS v2 metadata has no licence field and no LICENSE file lies beside "
        "it; pass --license SPDX-ID" in no_licence.problems[0]
    )
    empty = importio.context_for(QUIRKS / "no-licence" / "ai4-metadata.yml", None)
    empty = dataclasses.replace(empty, licence_text="\n")  # a LICENSE file left empty
    with pytest.raises(ImportRefused, match="; LICENSE beside it is empty; pass --license"):
        convert(importio.read_metadata(QUIRKS / "no-licence" / "ai4-metadata.yml"), context=empty)
    fixed = prepare(QUIRKS / "no-licence" / "ai4-metadata.yml", tmp_path, licence="apache 2.0")
    assert fixed.result == "valid", fixed.problems
    assert "license: Apache-2.0" in fixed.text
    # 'ai4os-hub' cannot be a Docker Hub namespace (no '-'): read as ai4oshub, with a note
    assert "image: ai4oshub/rip-currents:cpu" in fixed.text
    assert any("Docker Hub namespaces hold no '-'" in n for n in fixed.notes)


def test_trailing_commas_in_json_are_ignored_with_a_note_naming_line_and_column(tmp_path):
    outcome = prepare(QUIRKS / "v1-trailing-commas" / "metadata.json", tmp_path)
    assert outcome.result == "valid", outcome.problems
    assert outcome.notes[:4] == [
        "metadata.json line 6:44: trailing comma before ']' ignored; delete it in the source",
        "metadata.json line 8:71: trailing comma before ']' ignored; delete it in the source",
        "metadata.json line 14:54: trailing comma before '}' ignored; delete it in the source",
        "metadata.json line 15:3: trailing comma before '}' ignored; delete it in the source",
    ]
    assert "Trained on slides from three seasons." in outcome.text
    assert "source_code: https://github.com/deephdc/pollen_counter" in outcome.text


def test_missing_commas_between_lines_and_quotes_inside_a_text_are_read_as_meant(tmp_path):
    outcome = prepare(QUIRKS / "v1-missing-commas" / "metadata.json", tmp_path)
    assert outcome.result == "valid", outcome.problems
    assert outcome.notes[:4] == [
        "metadata.json line 3: double quotes inside the text were read as part of it; write "
        'them as \\" in the source',
        "metadata.json line 5:50: missing ',' between two values on separate lines added; add "
        "it in the source",
        "metadata.json line 7: double quotes inside the text were read as part of it; write "
        'them as \\" in the source',
        "metadata.json line 14:55: missing ',' between two values on separate lines added; add "
        "it in the source",
    ]
    data = importio.read_metadata(QUIRKS / "v1-missing-commas" / "metadata.json")
    assert data["summary"] == (
        'Tags bird species in field recordings, after the paper "Singing in the Field" (2021).'
    )
    assert data["description"] == [
        "Tags the species singing in each recording.\n",
        "Retrain it with your own labelled songs.\n",
        'Based on the paper "Singing in the Field".',
    ]
    assert data["sources"]["code"] == "https://github.com/deephdc/bird_songs"


def test_yaml_texts_that_yaml_cannot_read_are_read_as_written_with_a_note(tmp_path):
    outcome = prepare(QUIRKS / "v2-text-quirks" / "ai4-metadata.yml", tmp_path)
    assert outcome.result == "valid", outcome.problems
    assert outcome.notes[:2] == [
        "ai4-metadata.yml line 3: the text of 'summary' is not valid YAML; it was read as "
        "written; put it in quotes in the source",
        "ai4-metadata.yml lines 4-10: the text of 'description' is not valid YAML; it was read "
        "as written; indent it all under 'description: |-' in the source",
    ]
    data = importio.read_metadata(QUIRKS / "v2-text-quirks" / "ai4-metadata.yml")
    assert data["summary"] == (
        "Coral bleaching from reef photos: per-colony scores for monitoring teams."
    )
    assert data["description"] == (
        "Scores bleaching for each coral colony in a reef photo.\n\n"
        "The model was trained on annotated survey photos: three regions, five years.\n\n"
        "**Usage**\nUpload a photo and get one score per colony."
    )  # the template's '# doi:' comment before the next key is not text
    assert data["links"]["docker_image"] == "ai4oshub/coral-bleaching"  # the rest as it was
    unindented = importio.read_metadata(QUIRKS / "v2-unindented" / "ai4-metadata.yml")
    assert unindented["summary"] == (
        'Maps kelp forests, following the "Kelp Watch" protocol (2022).'
    )
    assert unindented["description"] == (
        "Maps kelp canopy in drone images of the coast.\n\n"
        "The benefits are many: seasonal maps, early warnings of loss.\n"
        "* https://github.com/ai4os-hub/kelp-mapper"
    )
    assert unindented["tags"] == ["kelp", "drones"]


def test_broken_syntax_whose_meaning_is_not_certain_is_still_one_precise_line(tmp_path):
    # a key indented by mistake inside the description: where the text ends is a guess
    uncertain = prepare(QUIRKS / "v2-uncertain" / "ai4-metadata.yml", tmp_path)
    assert uncertain.result == "refused"
    assert uncertain.problems == [
        f"{QUIRKS / 'v2-uncertain' / 'ai4-metadata.yml'}:6:2: YAML syntax error: did not find "
        "expected key while parsing a block mapping"
    ]
    for text, where in (
        ('{"a": "x" "b": 1}', (1, 11)),  # two members on one line
        ('{"a": [1 2]}', (1, 10)),  # a missing comma between numbers
        ('{"a": "one,\n two"}', (1, 12)),  # a line break inside a text
        ("{\"a\": 'x'}", (1, 7)),  # single quotes
        ('{\n  "a": "x", "b": "y" "z",\n  "c": 1\n}', (2, 22)),  # several members: not certain
    ):
        with pytest.raises(json.JSONDecodeError) as caught:
            importrepair.loads_json(text, dict)
        assert (caught.value.lineno, caught.value.colno) == where, text
    assert importrepair.loads_json("[1,\n2,\n]", dict) == (
        [1, 2],
        ["line 2:2: trailing comma before ']' ignored; delete it in the source"],
    )
    latin1 = tmp_path / "latin1" / "ai4-metadata.yml"
    latin1.parent.mkdir()
    latin1.write_bytes(b"title: x\nsummary: caf\xe9: a text YAML cannot read\n")
    refused = prepare(latin1, tmp_path)
    assert refused.problems == [
        f"{latin1}:2:13: file is not UTF-8 text (byte 0xe9); save it as UTF-8"
    ]
    # only title/summary/description are read as written; a broken list stays refused
    assert importrepair.repair_yaml_text("title: x\ntags: [a: b\n", 2) is None
    assert importrepair.repair_yaml_text('summary: "a\n  b"c\ntitle: x\n', 1) is None


def test_values_of_the_wrong_type_are_dropped_with_a_note():
    meta = load_json(V2_JSON)
    meta["links"]["docker_image"] = 5
    meta["tags"] = [{"a": 1}, "ok"]
    imported = from_ai4os_v2(meta, licence="MIT", image="ai4oshub/x:1")
    assert imported.id == "semseg-vaihingen"  # not derived from the number
    assert imported.data["tags"] == ["ok"]
    notes = "\n".join(imported.notes)
    assert "links.docker_image: 5 is not text; dropped" in notes
    assert "tag {'a': 1} is not a word; dropped" in notes


def test_a_key_given_twice_is_read_as_ai4os_reads_it(tmp_path):
    outcome = prepare(QUIRKS / "duplicate-key" / "ai4-metadata.yml", tmp_path)
    assert outcome.result == "valid", outcome.problems
    assert "libraries: [TensorFlow]\n" in outcome.text  # the last one, as PyYAML keeps it
    assert outcome.notes[0] == (
        "libraries: appears twice (line 15); the last value was kept, as AI4OS reads it; "
        "delete the other one in the source"
    )


# -- the command: atomic, repeatable, many files, a table ---------------------------------


def test_import_directory_writes_valid_entries_only_and_ends_with_a_table(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    before = (tmp_path / "modules.yml").read_text()
    code = main(["import", str(QUIRKS), "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1  # some files need their author
    assert "Traceback" not in err
    table = err[err.index("FILE") :]
    for source, module_id, result in (
        ("v1-tabs/metadata.json", "leaf-spotter", "written"),
        ("v2-bare/ai4-metadata.yml", "whale-calls", "written"),
        ("migrated/ai4-metadata.yml", "seed-counter", "written"),
        ("v2-tagged/ai4-metadata.yml", "-", "refused"),
        ("broken/metadata.json", "-", "refused"),
        ("no-licence/ai4-metadata.yml", "-", "refused"),
        ("duplicate-key/ai4-metadata.yml", "bean-sorter", "written"),
        ("v1-trailing-commas/metadata.json", "pollen-counter", "written"),
        ("v1-missing-commas/metadata.json", "bird-songs", "written"),
        ("v2-text-quirks/ai4-metadata.yml", "coral-bleaching", "written"),
        ("v2-unindented/ai4-metadata.yml", "kelp-mapper", "written"),
        ("v2-uncertain/ai4-metadata.yml", "-", "refused"),
    ):
        line = next(x for x in table.splitlines() if x.split()[0].endswith(source))
        assert line.split()[1:3] == [module_id, result], line
    assert "8 of 12 files imported as valid entries" in err
    ids = [m.id for m in load_catalog(tmp_path)]
    assert ids == [
        "plants",
        "bean-sorter",
        "seed-counter",
        "bird-songs",
        "leaf-spotter",
        "pollen-counter",
        "whale-calls",
        "coral-bleaching",
        "kelp-mapper",
    ]
    after = (tmp_path / "modules.yml").read_text()
    assert after.startswith(before)
    # re-running after a fix: only the fixed file comes in; the others now clash
    code = main(["import", str(QUIRKS / "no-licence"), "--license", "MIT", "--root", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    assert "rip-currents" in [m.id for m in load_catalog(tmp_path)]


def test_import_is_atomic_and_draft_is_kept_on_purpose_then_replaced(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    source = tmp_path / "src" / "metadata.json"
    source.parent.mkdir()
    meta = load_json(V1)
    meta["date_creation"] = "2019-01-01"
    meta["sources"]["docker_registry_repo"] = "deephdc/deep-oc-plants-classification-tf"
    # a summary that validates but an image the validator refuses: invalid, nothing written
    assert main(["import", str(V1), "--image", "Not An Image", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "runtime.image" in err and "nothing written" in err
    assert not (tmp_path / "catalog" / "plants-classification-tf").exists()
    assert [m.id for m in load_catalog(tmp_path)] == ["plants"]
    # --draft keeps it, marked, listing its problems
    args = ["import", str(V1), "--image", "Not An Image", "--root", str(tmp_path), "--draft"]
    assert main(args) == 1
    assert "draft written" in capsys.readouterr().err
    draft = (tmp_path / "catalog" / "plants-classification-tf" / "module.yml").read_text()
    assert draft.startswith("# DRAFT (deepmarket import --draft): this entry does not validate")
    assert "runtime.image" in draft.split("\n# Imported from")[0]
    # re-running with the fix replaces the draft (listed once)
    fix = ["import", str(V1), "--image", "deephdc/deep-oc-plants-classification-tf:2.1.0"]
    assert main([*fix, "--root", str(tmp_path)]) == 0, capsys.readouterr().err
    text = (tmp_path / "catalog" / "plants-classification-tf" / "module.yml").read_text()
    assert not text.startswith("# DRAFT")
    assert (tmp_path / "modules.yml").read_text().count("plants-classification-tf") == 1
    assert load_catalog(tmp_path).get("plants-classification-tf").image.endswith(":2.1.0")
    # and once it is a real entry, a second import is a clash, also in --dry-run
    assert main([*fix, "--root", str(tmp_path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "already listed" in err and " clash" in err


def test_import_dry_run_writes_nothing_and_prints_the_entry(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    before = (tmp_path / "modules.yml").read_text()
    args = ["import", str(V2_YAML), "--dry-run", "--license", "MIT", "--root", str(tmp_path)]
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert "id: mods\n" in out
    assert (tmp_path / "modules.yml").read_text() == before
    assert not (tmp_path / "catalog" / "mods").exists()


def test_import_usage_errors(tmp_path, capsys):
    assert main(["import", str(QUIRKS), "--id", "x", "--root", str(tmp_path)]) == 2
    assert "--id and --image name one module" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["import", str(tmp_path / "empty")]) == 2
    assert "no metadata file found" in capsys.readouterr().err
    for name, text, expected in (
        ("list.json", "[1, 2]", "must hold a mapping"),
        ("blank.json", "", "the file is empty"),
        ("binary.json", "\x00\x01", "invalid JSON"),
    ):
        (tmp_path / name).write_text(text)
        assert main(["import", str(tmp_path / name), "--dry-run"]) == 1
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    dup = tmp_path / "metadata.json"
    dup.write_text('{"title": "x", "title": "y", "sources": {}}')
    assert main(["import", str(dup), "--dry-run"]) == 1
    assert "key 'title' appears twice" in capsys.readouterr().err


# -- export ---------------------------------------------------------------------------------


def ai4_metadata_cli() -> str:
    found = Path(sys.executable).with_name("ai4-metadata")
    if found.is_file():
        return str(found)
    which = shutil.which("ai4-metadata")
    if which is None:
        pytest.fail("ai4-metadata is not installed: pip install -e '.[test]'")
    return which


def test_every_catalog_module_exports_to_what_ai4os_validator_accepts(tmp_path, capsys):
    assert main(["export", "--all", "-o", str(tmp_path), "--root", str(ROOT)]) == 0
    files = sorted(tmp_path.glob("*.ai4-metadata.yml"))
    assert len(files) == len(load_catalog(ROOT)) >= 20
    run = subprocess.run(
        [ai4_metadata_cli(), "validate", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("is valid for version") == len(files)


def test_an_imported_module_round_trips_to_ai4os(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    assert main(["import", str(QUIRKS / "v2-bare"), "--root", str(tmp_path)]) == 0
    module = load_catalog(tmp_path).get("whale-calls")
    back = export.ai4os_v2(module)
    assert back["links"]["docker_image"] == "https://hub.docker.com/r/ai4oshub/whale-calls"
    assert back["categories"] == ["AI4 trainable", "AI4 inference"]
    assert back["libraries"] == ["PyTorch"] and back["data-type"] == ["Audio"]
    out = tmp_path / "whale.yml"
    out.write_text(export.ai4os_v2_yaml(module))
    run = subprocess.run([ai4_metadata_cli(), "validate", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout


def test_jsonld_is_a_software_application_with_what_search_engines_read():
    module = load_catalog(ROOT).get("digits-classifier")
    doc = export.jsonld(module, "https://m.example.org/modules/digits-classifier/")
    assert doc["@context"] == "https://schema.org" and doc["@type"] == "SoftwareApplication"
    assert doc["url"] == doc["@id"] == "https://m.example.org/modules/digits-classifier/"
    assert doc["name"] == module.title and doc["description"] == module.summary
    assert doc["license"] == "https://spdx.org/licenses/Apache-2.0.html"
    assert "Computer Vision" in doc["keywords"] and doc["operatingSystem"]
    assert doc["offers"]["price"] == "0"
    script = export.jsonld_script(module)
    assert script.startswith('<script type="application/ld+json">') and "</" not in script[7:-9]


def test_jsonld_script_cannot_be_closed_by_metadata():
    module = load_catalog(ROOT).get("digits-classifier")
    module.data["summary"] = "</script><script>alert(1)</script>"
    script = export.jsonld_script(module)
    assert script.count("</script>") == 1 and json.loads(script[35:-9])["description"].startswith(
        "</script>"
    )


def test_imported_html_is_never_literal_text_on_the_marketplace(tmp_path, capsys):
    from deepmarket.site.build import build_site

    make_catalog(tmp_path, ["plants"])
    assert main(["import", str(QUIRKS / "v1-tabs"), "--root", str(tmp_path)]) == 0
    out = build_site(ROOT / "mkdocs.yml", site_dir=tmp_path / "public", catalog=tmp_path)
    html = (out / "modules" / "leaf-spotter" / "index.html").read_text()
    article = html[html.index("<article") : html.index("</article>")]
    leaf = 'src="https://raw.githubusercontent.com/example-org/leaf/master/leaf.png"'
    assert leaf in article
    assert '<a href="https://zenodo.org/record/1"' in article
    for literal in ("&lt;img", "&lt;a ", "&lt;br", "&lt;script", "<script"):
        assert literal not in article
