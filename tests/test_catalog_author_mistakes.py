"""What a new module author gets wrong, and the one located, fix-suggesting message for each.

Placeholders left from `deepmarket new` or AI4OS' cookiecutter template and duplicated modules
are warnings locally (the preview still works) and errors in CI (`CI=true`) or with --strict.
"""

from __future__ import annotations

import pytest
from catalog_factory import make_catalog, module_text, write_module

from deepmarket.catalog import load_catalog, validate_catalog
from deepmarket.catalog.formats import guess_date, suggest_id
from deepmarket.catalog.rules import source_key
from deepmarket.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def only(problems):
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


@pytest.fixture
def scaffold(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    make_catalog(tmp_path, ["plants"])
    assert main(["new", "my-plant", "--root", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "placeholders are warnings here and errors in CI" in err
    assert "icon.svg or icon.png" in err
    return tmp_path


def test_an_untouched_scaffold_warns_locally_and_fails_in_ci(scaffold, capsys, monkeypatch):
    code, out, err = run_cli(capsys, "validate", "--root", str(scaffold))
    assert code == 0
    assert "catalog/my-plant/module.yml:9:10: warning: summary: still holds the placeholder" in out
    assert "catalog/my-plant/README.md:3:1: warning: still holds the placeholder 'TODO'" in out
    assert "your-org" in out
    assert err.startswith("ok: 2 modules valid; 5 warnings (errors in CI")

    code, out, _ = run_cli(capsys, "validate", "--root", str(scaffold), "--format", "github")
    assert code == 0 and out.startswith("::warning file=catalog/my-plant/README.md,line=3")

    code, out, err = run_cli(capsys, "validate", "--root", str(scaffold), "--strict")
    assert code == 1 and "warning" not in out and err == "5 problems in 2 files\n"

    monkeypatch.setenv("CI", "true")
    code, out, _ = run_cli(capsys, "validate", "--root", str(scaffold), "--format", "github")
    assert code == 1
    assert out.count("::error ") == 5 and "::warning" not in out


def test_a_filled_in_scaffold_is_clean(scaffold):
    module = scaffold / "catalog" / "my-plant"
    text = (module / "module.yml").read_text()
    text = (
        text.replace("TODO say in one line what my-plant does.", "Names plants from photos.")
        .replace("TODO: describe the module.", "A ResNet trained on PlantNet.")
        .replace("your-org", "plantlab")
    )
    (module / "module.yml").write_text(text)  # the TODOs left in comments are not published
    (module / "README.md").write_text(
        "# My plant\n\nIt names plants.\n\n"
        "```python\n# TODO in code is the author's business\n```\n"
    )
    assert validate_catalog(scaffold) == []


@pytest.mark.parametrize(
    ("field", "value", "path", "expected"),
    [
        # AI4OS cookiecutter leftovers: one message each, even where the URL is also invalid.
        ("dataset", "https://demo_url", "links.dataset", "placeholder host 'demo_url'"),
        (
            "dataset",
            "add-some-url-pointing-to-your-training-data",
            "links.dataset",
            "template text 'add-some-url'",
        ),
        ("documentation", "https://docs.example.org/x", "links.documentation", "example.org"),
        ("documentation", "http://localhost:5000/ui", "links.documentation", "'localhost'"),
    ],
)
def test_template_leftovers_in_links(tmp_path, field, value, path, expected):
    make_catalog(tmp_path, ["plants"])
    text = module_text().replace("links:\n", f"links:\n  {field}: {value}\n")
    write_module(tmp_path, "plants", text)
    problem = only(validate_catalog(tmp_path))
    assert problem.path == path and expected in problem.message
    assert "replace it with the real URL" in problem.message
    assert problem.line is not None


def test_lowercase_todo_and_extension_keys_are_the_authors_business(tmp_path):
    make_catalog(tmp_path, ["plants"])
    text = module_text(
        summary="A todo-list classifier for your notes.", **{"x-notes": "TODO later"}
    )
    write_module(tmp_path, "plants", text)
    assert validate_catalog(tmp_path) == []


def test_duplicate_titles_and_repositories_are_flagged(tmp_path):
    make_catalog(tmp_path, ["plants", "seeds", "weeds"])
    seeds = module_text(title="'PLANT  species classifier'").replace("plants", "seeds")
    weeds = module_text().replace("plants", "weeds")
    weeds = weeds.replace(
        "DEEP-OC-weeds-classification-tf", "deep-oc-seeds-classification-tf.git/"
    ).replace("title: Plant species classifier", "title: Weeds")
    write_module(tmp_path, "seeds", seeds.replace("id: seeds", "id: seeds"))
    write_module(tmp_path, "weeds", weeds)
    found = validate_catalog(tmp_path)
    assert [(p.file, p.path, p.severity) for p in found] == [
        ("catalog/seeds/module.yml", "title", "warning"),
        ("catalog/weeds/module.yml", "links.source_code", "warning"),
    ]
    assert "also the title of module 'plants'" in found[0].message
    assert "module 'seeds' already links this repository" in found[1].message
    assert len(load_catalog(tmp_path)) == 3  # warnings never stop the site


def test_source_keys_tell_monorepo_folders_apart():
    same = source_key("https://GitHub.com/Org/Repo.git/")
    assert same == source_key("http://www.github.com/org/repo")
    assert source_key("https://github.com/o/r/tree/main/a") == source_key(
        "https://github.com/o/r/tree/dev/a/"
    )
    assert source_key("https://github.com/o/r/tree/main/a") != source_key(
        "https://github.com/o/r/tree/main/b"
    )


def test_an_icon_beside_module_yml_is_used_without_a_key(tmp_path):
    make_catalog(tmp_path, ["plants"])
    write_module(tmp_path, "plants", module_text(icon=None))
    assert validate_catalog(tmp_path) == []
    assert load_catalog(tmp_path).get("plants").icon == tmp_path / "catalog/plants/icon.svg"

    (tmp_path / "catalog/plants/icon.svg").write_text(
        "<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"
    )
    problem = only(validate_catalog(tmp_path))
    assert problem.path == "icon" and problem.is_error
    assert "active SVG content" in problem.message and "beside module.yml" in problem.message

    (tmp_path / "catalog/plants/icon.svg").unlink()
    (tmp_path / "catalog/plants/icon.png").write_bytes(b"\x89PNG\r\n")
    assert load_catalog(tmp_path).get("plants").icon == tmp_path / "catalog/plants/icon.png"


@pytest.mark.parametrize(
    ("changes", "path", "message"),
    [
        (
            {"summary": "Classify plants: fast and free"},
            "",
            "put it in quotes: summary: 'Classify plants: fast and free'",
        ),
        ({"dates": "{created: 29/11/2026}"}, "dates.created", "write '2026-11-29'"),
        ({"tags": "[Plants]"}, "tags[0]", "'Plants' must be a lowercase word or slug; write it "),
        ({"id": "My_Plant"}, "id", "write it as 'my-plant'"),
        ({"license": "Apache 2.0"}, "license", "'Apache 2.0' is not an SPDX licence id; write it "),
        ({"license": "GPLv3"}, "license", "write it as 'GPL-3.0-only'"),
        ({"license": "BSD"}, "license", "could mean 'BSD-3-Clause' or 'BSD-2-Clause'"),
        ({"license": "Proprietary"}, "license", "or LicenseRef-<name> for a licence of your own"),
    ],
)
def test_every_message_ends_with_its_fix(tmp_path, changes, path, message):
    make_catalog(tmp_path, ["plants"])
    write_module(tmp_path, "plants", module_text(**changes))
    found = [p for p in validate_catalog(tmp_path) if "directory name" not in p.message]
    problem = only(found)
    assert problem.path == path and message in problem.message, str(problem)
    assert problem.line is not None and problem.col is not None


def test_a_url_without_scheme_gets_one_message_with_the_rewrite(tmp_path):
    make_catalog(tmp_path, ["plants"])
    text = module_text().replace("  source_code: https://", "  source_code: ")
    write_module(tmp_path, "plants", text)
    problem = only(validate_catalog(tmp_path))
    assert problem.path == "links.source_code"
    assert problem.message.endswith(
        "has no scheme; write 'https://github.com/deephdc/DEEP-OC-plants-classification-tf'"
    )


def test_date_and_id_guesses_never_guess_between_two_readings():
    assert guess_date("29/11/2026") == "2026-11-29"
    assert guess_date("11/29/2026") == "2026-11-29"
    assert guess_date("2026/1/3") == "2026-01-03"
    assert guess_date("03/04/2026") is None  # 3 April or 4 March: the author must say
    assert suggest_id("3D Pose") == "pose-3d"
    assert suggest_id("42") is None


def test_new_suggests_an_id(tmp_path, capsys):
    make_catalog(tmp_path, ["plants"])
    code, _, err = run_cli(capsys, "new", "My_Plant", "--root", str(tmp_path))
    assert code == 2 and err.rstrip().endswith("e.g. 'my-plant'")
