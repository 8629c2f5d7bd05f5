"""`deepmarket controller run` refuses bad input with one line, before touching a cluster."""

from __future__ import annotations

from deepmarket.cli import main
from deepmarket.cli.controller_cmds import _toleration


def test_missing_kubeconfig_is_one_line(tmp_path, capsys):
    code = main(["controller", "run", "--kubeconfig", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("deepmarket: error: no usable Kubernetes credentials in ")
    assert "\n" not in err and "Traceback" not in err


def test_catalog_without_modules_yml_is_a_usage_error(tmp_path, capsys):
    code = main(["controller", "run", "--catalog", str(tmp_path)])
    assert code == 2
    assert "no modules.yml there" in capsys.readouterr().err


def test_toleration_syntax():
    assert _toleration("kwok.x-k8s.io/node=fake:NoSchedule") == {
        "key": "kwok.x-k8s.io/node",
        "operator": "Equal",
        "value": "fake",
        "effect": "NoSchedule",
    }
    assert _toleration("nvidia.com/gpu") == {"key": "nvidia.com/gpu", "operator": "Exists"}
