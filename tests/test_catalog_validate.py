"""The validator: schema errors with positions, cross-file rules, the `validate`/`list` CLI."""

from __future__ import annotations

import json

import pytest
from catalog_factory import make_catalog, module_text, write_index, write_module

from deepmarket.catalog import (
    CatalogInvalid,
    Problem,
    load_catalog,
    validate_catalog,
    validate_paths,
)
from deepmarket.cli import main
from deepmarket.errors import UserError


def messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def one(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, messages(problems)
    return problems[0]


@pytest.fixture
def catalog(tmp_path):
    return make_catalog(tmp_path, ["plants", "seeds"], deploy=("plants",))


def test_valid_catalog_loads_in_index_order(catalog):
    write_index(catalog, ["seeds", "plants"], deploy=("plants",))
    loaded = load_catalog(catalog)
    assert [m.id for m in loaded] == ["seeds", "plants"]
    plants = loaded.get("plants")
    assert plants.deploy and not loaded.get("seeds").deploy
    assert plants.trainable and plants.inference
    assert plants.image == "deephdc/deep-oc-plants-classification-tf:1.2.0"
    assert plants.readme == "# Plants\n"
    assert plants.icon == catalog / "catalog" / "plants" / "icon.svg"
    assert plants.resources("training")["gpu"] == 1
    assert plants.data["dates"] == {"created": "2019-03-01", "updated": "2024-05-10"}
    assert validate_catalog(catalog) == []


def test_catalog_invalid_is_a_user_error_listing_every_problem(catalog):
    write_module(catalog, "plants", module_text(title=None, summary=None))
    with pytest.raises(CatalogInvalid) as exc:
        load_catalog(catalog)
    assert isinstance(exc.value, UserError)
    assert [p.path for p in exc.value.problems] == ["summary", "title"]
    assert "2 problems" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("changes", "where", "path", "message"),
    [
        ({"licence": "MIT"}, (32, 1), "licence", "unknown key 'licence' (did you mean 'license'?"),
        ({"x-internal": "ok"}, None, None, None),
        (
            {"license": "mit"},
            (17, 10),
            "license",
            "'mit' is not an SPDX licence id; write it as 'MIT'",
        ),
        ({"license": "Apache-2.0 OR MIT"}, None, None, None),
        ({"license": "GPL-2.0-only WITH Classpath-exception-2.0"}, None, None, None),
        ({"license": "Aapche-2.0"}, (17, 10), "license", "did you mean 'Apache-2.0'?"),
        ({"libraries": "[Tensorflow]"}, (11, 13), "libraries[0]", "did you mean 'TensorFlow'?"),
        ({"categories": "[trainable, trainable]"}, (13, 13), "categories", "more than once"),
        ({"tasks": "[]"}, (12, 8), "tasks", "at least 1 item"),
        ({"tags": "[Plants]"}, (15, 8), "tags[0]", "lowercase word or slug"),
        ({"doi": "https://doi.org/10.5281/x"}, (18, 6), "doi", "without the https://doi.org/"),
        ({"doi": "10/x"}, (18, 6), "doi", "is not a DOI"),
        ({"dates": "{created: 2024-02-30}"}, (16, 18), "dates.created", "not a valid date"),
        ({"dates": "{created: 2024-1-3}"}, (16, 18), "dates.created", "YYYY-MM-DD"),
        (
            {"dates": "{created: 2024-01-03, updated: 2023-01-01}"},
            (16, 39),
            "dates.updated",
            "before created",
        ),
        ({"title": "'" + "t" * 81 + "'"}, (2, 8), "title", "at most 80"),
        ({"summary": '"two\\nlines"'}, (3, 10), "summary", "single, non-blank line"),
        ({"id": "Plants"}, (1, 5), "id", "DNS-1035"),
        ({"id": "3d-pose"}, (1, 5), "id", "starting with a letter"),
        ({"readme": "../../etc/passwd.md"}, (6, 9), "readme", "must not contain '..'"),
        ({"readme": "/etc/motd.md"}, (6, 9), "readme", "must be a relative path"),
        ({"readme": "NOPE.md"}, (6, 9), "readme", "README 'NOPE.md' does not exist"),
        ({"icon": "icon.gif"}, (7, 7), "icon", ".png, .jpg"),
    ],
)
def test_module_field_rules(tmp_path, changes, where, path, message):
    make_catalog(tmp_path, ["plants"])
    write_module(tmp_path, "plants", module_text(**changes))
    problems = [p for p in validate_catalog(tmp_path) if "directory name" not in p.message]
    if message is None:
        assert problems == []
        return
    problem = one(problems)
    assert problem.file == "catalog/plants/module.yml"
    assert (problem.line, problem.col) == where
    assert problem.path == path
    assert message in problem.message


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        (
            "  source_code: https://github.com/deephdc/DEEP-OC-plants-classification-tf\n",
            "",
            "links.source_code",
            "missing required field 'source_code'",
        ),
        (
            "  source_code: https://github.com",
            "  source_code: ftp://github.com",
            "links.source_code",
            "http:// or https://",
        ),
        (
            "  source_code: https://github.com",
            "  source_code: https://exa mple.com",
            "links.source_code",
            "not an absolute URI",
        ),
        (
            "  image: deephdc/deep-oc-plants-classification-tf:1.2.0",
            "  image: deephdc/deep-oc-plants-classification-tf",
            "runtime.image",
            "is not pinned",
        ),
        (
            "  image: deephdc/deep-oc-plants-classification-tf:1.2.0",
            "  image: deephdc/deep-oc-plants-classification-tf:latest",
            "runtime.image",
            "'latest'",
        ),
        (
            "  image: deephdc/deep-oc-plants-classification-tf:1.2.0",
            "  image: Deephdc/Plants:1.0",
            "runtime.image",
            "lowercase",
        ),
        (
            "  image: deephdc/deep-oc-plants-classification-tf:1.2.0",
            "  image: ghcr.io/ai4os/plants@sha256:" + "a" * 64,
            None,
            None,
        ),
        (
            "  image: deephdc/deep-oc-plants-classification-tf:1.2.0",
            "  image: registry.example.org:5000/a/b:latest@sha256:" + "0" * 64,
            None,
            None,
        ),
        ("  train: true", "  train: false", "runtime.train", "categories include 'trainable'"),
        ("  train: true", "  train: yes", "runtime.train", "expected true or false, got a string"),
        ("  port: 5000", "  port: 70000", "runtime.port", "<= 65535"),
        ("  port: 5000", '  port: "5000"', "runtime.port", "expected an integer"),
        ("  model: plants\n", "", "runtime.model", "missing required field 'model'"),
        (
            "gpu_memory_MB: 8000",
            "gpu_memory_MB: 8000, colour: red",
            "resources.training.colour",
            "unknown key 'colour'",
        ),
        (
            "  inference: {cpu: 1, memory_MB: 2048, gpu: 0}",
            "  inference: {cpu: 1, memory_MB: 2048, gpu: 0, gpu_memory_MB: 10}",
            "resources.inference.gpu_memory_MB",
            "gpu is 0",
        ),
        (
            "files: {data: samples/seven.png}",
            "files: {data: samples/eight.png}",
            "runtime.check.predict.files.data",
            "does not exist",
        ),
    ],
)
def test_nested_field_rules(tmp_path, old, new, path, message):
    make_catalog(tmp_path, ["plants"])
    text = module_text()
    assert old in text
    write_module(tmp_path, "plants", text.replace(old, new))
    problems = validate_catalog(tmp_path)
    if message is None:
        assert problems == []
        return
    problem = one(problems)
    assert problem.path == path and message in problem.message, str(problem)
    assert problem.line is not None and problem.col is not None


def test_id_must_equal_directory_name(catalog):
    write_module(catalog, "plants", module_text(id="seeds"))
    problem = one(validate_catalog(catalog))
    assert str(problem) == (
        "catalog/plants/module.yml:1:5: id: id 'seeds' differs from its directory name 'plants'; "
        "rename one so they match"
    )


def test_index_and_directories_agree_both_ways(catalog):
    write_index(catalog, ["plants", "ghost"])
    write_module(catalog, "orphan")
    got = messages(validate_catalog(catalog))
    assert got == [
        "catalog/orphan/module.yml:1:1: module 'orphan' is not listed in modules.yml; "
        "add `- id: orphan` there",
        "catalog/seeds/module.yml:1:1: module 'seeds' is not listed in modules.yml; "
        "add `- id: seeds` there",
        "modules.yml:5:9: modules[1].id: no module directory catalog/ghost/ for this entry; "
        "create it with `deepmarket new ghost` or remove the entry",
    ]


def test_duplicate_index_ids_and_deploy_without_inference(catalog):
    (catalog / "modules.yml").write_text(
        "modules:\n  - id: plants\n  - id: seeds\n    deploy: true\n  - id: plants\n"
    )
    write_module(catalog, "seeds", module_text(categories="[trainable]"))
    got = messages(p for p in validate_catalog(catalog) if p.is_error)
    assert got == [
        "catalog/seeds/module.yml:1:5: id: id 'plants' differs from its directory name 'seeds'; "
        "rename one so they match",
        "modules.yml:4:13: modules[1].deploy: module 'seeds' is auto-deployed for inference but "
        "its categories lack 'inference'",
        "modules.yml:5:9: modules[2].id: duplicate id 'plants' (first listed at line 2)",
    ]


def test_index_schema(tmp_path):
    make_catalog(tmp_path, ["plants"])
    (tmp_path / "modules.yml").write_text("modules:\n  - id: plants\n    deploy: sometimes\n")
    assert messages(validate_catalog(tmp_path)) == [
        "modules.yml:3:13: modules[0].deploy: expected true or false, got a string"
    ]


def test_missing_index_and_module_file(tmp_path):
    make_catalog(tmp_path, ["plants"])
    (tmp_path / "modules.yml").unlink()
    (tmp_path / "catalog" / "plants" / "module.yml").unlink()
    got = messages(validate_catalog(tmp_path))
    assert "catalog/plants/module.yml: file does not exist" in got
    assert "modules.yml: file does not exist" in got


def test_symlinks_cannot_escape_the_module_directory(catalog, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.md"
    outside.write_text("secret")
    readme = catalog / "catalog" / "plants" / "README.md"
    readme.unlink()
    readme.symlink_to(outside)
    problem = one(validate_catalog(catalog))
    assert problem.path == "readme" and "resolves outside the module's directory" in problem.message


def test_size_caps_on_referenced_files(catalog):
    (catalog / "catalog" / "plants" / "icon.svg").write_bytes(b"<" * (1024 * 1024 + 1))
    problem = one(validate_catalog(catalog))
    assert problem.path == "icon" and "the limit is 1 MiB" in problem.message


@pytest.mark.parametrize(
    "svg",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><a href="javascript:alert(1)"><rect/></a></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><p>x</p></foreignObject></svg>',
    ],
)
def test_an_icon_that_can_run_code_is_refused(catalog, svg):
    (catalog / "catalog" / "plants" / "icon.svg").write_bytes(svg)
    problem = one(validate_catalog(catalog))
    assert problem.path == "icon" and "active SVG content" in problem.message
    assert problem.file.endswith("catalog/plants/module.yml") and problem.line == 7


def test_validate_paths_checks_only_the_given_files(catalog):
    write_module(catalog, "seeds", module_text(id="seeds", license="Nope"))
    plants = catalog / "catalog" / "plants"
    assert validate_paths([plants, catalog / "modules.yml"], catalog) == []
    problem = one(validate_paths([catalog / "catalog" / "seeds" / "module.yml"], catalog))
    assert problem.file == "catalog/seeds/module.yml" and problem.path == "license"


# --- the CLI -------------------------------------------------------------------------------


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_validate_ok_and_list(catalog, capsys):
    code, out, err = run_cli(capsys, "validate", "--root", str(catalog))
    assert (code, out, err) == (0, "", "ok: 2 modules valid\n")
    code, out, err = run_cli(capsys, "list", "--root", str(catalog))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "TITLE", "CATEGORIES", "LIBRARIES"]
    assert lines[2].startswith(
        "plants  Plant species classifier  trainable, inference, pre-trained"
    )
    assert lines[2].endswith("TensorFlow")


def test_cli_validate_formats(catalog, capsys):
    write_module(catalog, "plants", module_text(license="'MIT, or so'\n# 100% wrong"))
    message = "'MIT, or so' names 'MIT,', which is not an SPDX licence id; did you mean 'MIT'?"
    code, out, err = run_cli(capsys, "validate", "--root", str(catalog))
    assert code == 1
    assert out == f"catalog/plants/module.yml:17:10: license: {message}\n"
    assert err == "1 problem in 1 file\n"

    code, out, _ = run_cli(capsys, "validate", "--root", str(catalog), "--format", "json")
    assert code == 1
    assert json.loads(out) == {
        "valid": False,
        "checked": 2,
        "problems": [
            {
                "file": "catalog/plants/module.yml",
                "line": 17,
                "col": 10,
                "path": "license",
                "message": message,
                "severity": "error",
            }
        ],
    }

    code, out, _ = run_cli(capsys, "validate", "--root", str(catalog), "--format", "github")
    assert code == 1
    assert (
        out == f"::error file=catalog/plants/module.yml,line=17,col=10,title=license::{message}\n"
    )


def test_github_annotation_for_a_whole_file_has_no_line():
    from deepmarket.catalog.report import github_line

    problem = Problem("catalog/x/module.yml", None, None, "", "file does not exist")
    assert github_line(problem) == "::error file=catalog/x/module.yml::file does not exist"


def test_github_annotations_escape_what_workflow_commands_reserve():
    from deepmarket.catalog.report import github_line

    line = github_line(Problem("a,b:c.yml", 1, 2, "x", "50% done\nnext"))
    assert line == "::error file=a%2Cb%3Ac.yml,line=1,col=2,title=x::50%25 done%0Anext"


def test_cli_exit_codes_for_usage_and_io_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "validate", "--root", str(tmp_path))
    assert code == 2 and "is not a catalog root" in err and err.startswith("deepmarket: error:")
    code, _, err = run_cli(capsys, "validate", str(tmp_path / "nope.yml"))
    assert code == 2 and "does not exist" in err
    with pytest.raises(SystemExit) as exc:
        main(["validate", "--format", "xml"])
    assert exc.value.code == 2


def test_cli_list_refuses_an_invalid_catalog(catalog, capsys):
    write_index(catalog, ["plants"])
    code, out, err = run_cli(capsys, "list", "--root", str(catalog))
    assert code == 1 and out == ""
    assert err.startswith("deepmarket: error: the catalog has 1 problem; first: catalog/seeds/")


def test_fast_validator_verdict_is_never_dropped(catalog, monkeypatch):
    """If the wording validator found nothing where jsonschema-rs did, rs's error is kept."""
    from deepmarket.catalog import schema

    class Silent:
        def iter_errors(self, data):
            return iter(())

    monkeypatch.setattr(schema, "validator", lambda name: Silent())
    write_module(catalog, "plants", module_text(license="Nope"))
    problem = one(validate_catalog(catalog))
    assert (problem.file, problem.line, problem.path) == (
        "catalog/plants/module.yml",
        17,
        "license",
    )
    assert "spdx-license" in problem.message
