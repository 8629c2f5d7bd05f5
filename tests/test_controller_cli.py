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


class _Apiserver:
    """Answers list calls from a script: ApiErrors first, then success."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.paths: list[str] = []

    def request(self, method, path, **_):
        self.paths.append(path)
        answer = self.answers.pop(0) if self.answers else {}
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_waits_until_deepmodules_can_be_listed():
    from deepmarket.controller.kube import ApiError
    from deepmarket.controller.runner import wait_for_deepmodule_api

    said: list[str] = []
    api = _Apiserver(ApiError(404, "not found"), ApiError(429, "storage is (re)initializing"))
    wait_for_deepmodule_api(api, ("a",), timeout=30, say=said.append, every=0)
    assert api.paths[-1] == "/apis/deepmarket.dev/v1alpha1/namespaces/a/deepmodules"
    assert len(api.paths) == 3 and "404" in said[0] and "429" in said[1]


def test_gives_up_with_one_line_saying_how_to_install_the_crds():
    import pytest

    from deepmarket.controller.kube import ApiError
    from deepmarket.controller.runner import wait_for_deepmodule_api
    from deepmarket.errors import UserError

    api = _Apiserver(*[ApiError(404, "the server could not find the requested resource")] * 5)
    with pytest.raises(UserError) as err:
        wait_for_deepmodule_api(api, (), timeout=0, say=lambda _: None)
    assert "\n" not in str(err.value)
    assert "install the CRDs with `kubectl apply -k controller/`" in str(err.value)
