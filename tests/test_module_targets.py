"""What `deepmarket module serve TARGET` resolves to, and its errors."""

from pathlib import Path

import pytest

from deepmarket.errors import UsageError, UserError
from deepmarket.modules import targets

REPO = Path(__file__).resolve().parent.parent


def test_catalog_id_names_the_model_in_runtime():
    found = targets.resolve("digits-classifier", REPO, {"digits": "deepmarket_digits.api"})
    assert found.model == "digits"


def test_package_directory_names_its_entry_point():
    path = REPO / "examples" / "modules" / "digits"
    found = targets.resolve(str(path), REPO, {"digits": "deepmarket_digits.api"})
    assert (found.model, found.package_dir) == ("digits", path)


def test_missing_installation_says_how_to_install(tmp_path):
    path = REPO / "examples" / "modules" / "digits"
    with pytest.raises(UserError, match=r"'digits' .* not installed .*pip install -e "):
        targets.resolve(str(path), REPO, {})


def test_unknown_target_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="'nope' is neither a module package directory"):
        targets.resolve("nope", tmp_path, {})


def test_runtime_model_is_required(tmp_path):
    entry = tmp_path / "catalog" / "x"
    entry.mkdir(parents=True)
    (entry / "module.yml").write_text("id: x\nruntime: {port: 5000}\n")
    with pytest.raises(UserError, match=r"module.yml: runtime.model: missing"):
        targets.resolve("x", tmp_path, {})


def test_pyproject_must_declare_one_entry_point(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(UserError, match=r"declares 0 'deepaas\.v2\.model' entry points"):
        targets.resolve(str(tmp_path), tmp_path, {})


def test_serve_refuses_a_busy_port_before_starting_anything(capsys):
    import socket

    from deepmarket.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["module", "serve", "digits-classifier", "--port", str(port)])
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "pyproject.toml",
            '[tool.poetry]\nname = "m"\n\n[tool.poetry.plugins."deepaas.v2.model"]\n'
            'poetry_model = "m.api"\n',
        ),
        (
            "setup.cfg",
            "[metadata]\nname = m\n\n[options.entry_points]\ndeepaas.v2.model =\n"
            "    cfg_model = m.api\n",
        ),
    ],
)
def test_entry_points_are_found_however_the_package_declares_them(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    expected = "poetry_model" if name == "pyproject.toml" else "cfg_model"
    assert targets.declared_models(tmp_path) == ([expected], str(tmp_path / name))
    found = targets.resolve(str(tmp_path), REPO, {expected: "m.api"})
    assert found.model == expected


def test_setup_py_packages_are_read_from_the_installed_distribution(tmp_path):
    # setup.py declares its entry points in code: the installed metadata is what tells
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "deepmarket-digits"\n')
    names, where = targets.declared_models(tmp_path)
    assert names == ["digits"] and where == "the installed distribution 'deepmarket-digits'"
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "not-installed-anywhere"\n')
    with pytest.raises(UserError, match=r"declares 0 'deepaas\.v2\.model' entry points"):
        targets.resolve(str(tmp_path), REPO, {})
