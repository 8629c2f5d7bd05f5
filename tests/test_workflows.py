"""The GitHub workflows: actionlint on every one, and the pull request review they run
(`deepmarket review`), run here exactly as validate.yml runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deepmarket.catalog.model import Problem
from deepmarket.cli import main
from deepmarket.contrib import review
from tests.actionlint_tool import Unavailable, ensure_actionlint
from tests.submit_helpers import (
    AUTHOR_TOKEN,
    REPO_ROOT,
    WORKFLOWS,
    fill_module,
    git,
    make_world,
    review_run,
    run_review_step,
    workflow,
)


@pytest.fixture(scope="module")
def actionlint() -> Path:
    try:
        path = ensure_actionlint()
    except Unavailable as exc:
        pytest.skip(str(exc))
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is missing (scripts/install-system-deps.sh installs it)")
    return path


def test_every_workflow_passes_actionlint(actionlint):
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert len(files) >= 5
    out = subprocess.run(
        [str(actionlint), "-no-color", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_actionlint_catches_a_brokenworkflow(actionlint, tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.write_text(
        "on: pull_request\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ github.event.pull_request.titel }} $UNQUOTED\n"
        "        timeout-minute: 5\n"
    )
    out = subprocess.run(
        [str(actionlint), "-no-color", str(bad)], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 1
    assert "timeout-minute" in out.stdout  # an unknown key
    assert "SC2086" in out.stdout  # shellcheck ran on the script


def test_comment_workflow_posts_what_validate_leaves_without_running_fork_code():
    validate, comment = workflow("validate.yml"), workflow("comment.yml")
    on = comment[True]  # PyYAML reads the key `on` as True
    assert on["workflow_run"]["workflows"] == [validate["name"]]
    assert validate["permissions"] == {"contents": "read"}
    assert comment["permissions"] == {"actions": "read", "pull-requests": "write"}
    steps = comment["jobs"]["comment"]["steps"]
    assert not any("checkout" in str(step.get("uses", "")) for step in steps)
    review_step = review_run(validate)
    assert '--summary "$GITHUB_STEP_SUMMARY"' in review_step
    assert "--comment review/comment.md" in review_step
    uploads = [
        s["with"]["path"]
        for s in validate["jobs"]["validate"]["steps"]
        if "upload-artifact" in str(s.get("uses"))
    ]
    assert uploads == ["review/", "preview/"]


# --- the review's pure parts ------------------------------------------------------------


def _p(file: str, line: int, message: str, severity: str = "error") -> Problem:
    return Problem(file, line, 1, "x", message, severity)


def test_rank_puts_the_changed_modules_and_unreadable_files_first():
    problems = [
        _p("catalog/other/module.yml", 1, "schema says no"),
        _p("catalog/mine/module.yml", 9, "summary: too long"),
        _p("catalog/mine/module.yml", 30, "is not valid YAML: mapping values are not allowed"),
        _p("catalog/mine/module.yml", 2, "placeholder", "warning"),
    ]
    ranked = review.rank(problems, ["mine"])
    assert [(p.file.split("/")[1], p.line) for p in ranked] == [
        ("mine", 30),
        ("mine", 9),
        ("other", 1),
        ("mine", 2),
    ]


def test_annotations_stop_at_githubs_limit_and_point_to_the_summary():
    problems = [_p("catalog/m/module.yml", i, f"problem {i}") for i in range(1, 15)]
    result = review.annotations(problems)
    errors = [line for line in result.lines if line.startswith("::error ")]
    assert len(errors) == 10 and result.hidden == 4
    assert result.lines[-1].startswith("::notice ") and "4 more problems" in result.lines[-1]
    preview = review.Preview(False, "not built", {})
    summary = review.summary(problems, ["m"], preview)
    assert all(f"problem {i}" in summary for i in range(1, 15))
    comment = review.comment(problems, ["m"], preview)
    assert comment.startswith(review.MARKER)
    assert "…and 4 more in the job summary." in comment
    assert "❌ `m`: 14 problems" in comment


# --- the review as validate.yml runs it ---------------------------------------------------


def test_the_review_step_annotates_at_most_ten_errors_of_a_broken_pull_request(tmp_path):
    repo = tmp_path / "catalog"
    repo.mkdir()
    for name in ("modules.yml", "mkdocs.yml"):
        shutil.copy(REPO_ROOT / name, repo / name)
    shutil.copytree(REPO_ROOT / "catalog", repo / "catalog")
    shutil.copytree(REPO_ROOT / "site", repo / "site")
    git(repo, "init", "--quiet", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "--quiet", "-m", "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    cwd = Path.cwd()
    os.chdir(repo)
    try:
        assert main(["new", "broken"]) == 0
    finally:
        os.chdir(cwd)
    module_yml = repo / "catalog" / "broken" / "module.yml"
    text = module_yml.read_text()
    for old, new in [
        ("license: MIT", "license: mit"),
        ("port: 5000", "port: http"),
        ("cpu: 1", "cpu: lots"),
    ]:
        text = text.replace(old, new)
    module_yml.write_text(text + "licence: MIT\nauthor: me\nversion: 1\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=a", "-c", "user.email=a@b.c", "commit", "--quiet", "-m", "broken")
    rc, output, summary, comment = run_review_step(repo, base, tmp_path)
    assert rc == 1, output
    errors = [line for line in output.splitlines() if line.startswith("::error ")]
    assert len(errors) == 10
    assert all("file=catalog/broken/" in line for line in errors)
    notice = [line for line in output.splitlines() if line.startswith("::notice ")]
    assert len(notice) == 1 and "the job summary lists every one" in notice[0]
    table = [line for line in summary.read_text().splitlines() if line.startswith("| ❌")]
    assert len(table) > 10
    assert "❌ `broken`:" in comment.read_text()
    assert not (repo / "preview").exists()  # not built over errors


@pytest.fixture
def submitted(tmp_path, monkeypatch):
    """A module submitted to the stand-in, and a checkout of its pull request's head."""
    world = make_world(tmp_path, with_site=True)
    monkeypatch.chdir(world.work)
    monkeypatch.setenv("GITHUB_TOKEN", AUTHOR_TOKEN)
    assert main(["new", "leaf-spotter"]) == 0
    fill_module(world.work, "leaf-spotter")
    assert main(["submit", "leaf-spotter", "--github-url", world.standin.url]) == 0
    checkout = tmp_path / "pr"
    git(tmp_path, "clone", "--quiet", world.standin.clone_url(world.upstream), str(checkout))
    git(checkout, "fetch", "--quiet", "origin", "refs/pull/1/head:pr-1")
    git(checkout, "checkout", "--quiet", "pr-1")
    yield world, checkout
    world.standin.stop()


def test_the_pull_requests_checks_pass_as_the_workflow_runs_them(submitted, tmp_path):
    world, checkout = submitted
    base = world.standin.branch_sha(world.upstream, "main")
    rc, output, summary, comment = run_review_step(checkout, base, tmp_path)
    assert rc == 0, output
    assert not [line for line in output.splitlines() if line.startswith("::error")]
    text = comment.read_text()
    assert "✅ `leaf-spotter`: valid; its marketplace page builds" in text
    assert (checkout / "preview" / "modules" / "leaf-spotter" / "index.html").is_file()
    assert "✅ The catalog is valid." in summary.read_text()
