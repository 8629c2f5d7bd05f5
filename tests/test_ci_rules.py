"""The CI rule itself: a skip passes on a laptop and fails under CI=true."""

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py").read_text()


@pytest.mark.parametrize(("ci", "expect"), [("", "skipped"), ("true", "failed")])
def test_skip_becomes_failure_in_ci(pytester, monkeypatch, ci, expect):
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST.replace('pytest_plugins = ["pytester"]', ""))
    pytester.makepyfile("import pytest\ndef test_x():\n    pytest.skip('no etcd binary')\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get(expect) == 1, result.stdout.str()
    if ci:
        result.stdout.fnmatch_lines(["*skipped under CI=true*no etcd binary*"])


def test_cli_version(capsys):
    from deepmarket.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "deepmarket 0.1.0" in capsys.readouterr().out
