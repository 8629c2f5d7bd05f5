"""Shared set-up for the `deepmarket submit` tests: a GitHub stand-in holding an upstream
catalog, an author's clone of it (over git's smart HTTP), and a filled-in new module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.github_standin import GitHubStandIn, Repo

REPO_ROOT = Path(__file__).resolve().parents[1]
MAINTAINER_TOKEN = "ghp_maintainer0000000000000000000000000"
AUTHOR_TOKEN = "ghp_author00000000000000000000000000000"

INDEX = b"""\
# The catalog index (upstream's own comments must survive a submit).
modules:
  - id: digits-classifier
    deploy: true
"""

FILLED = """\
id: {id}
title: Leaf disease spotter
summary: Spot five common leaf diseases on photographs of tomato and potato leaves.
description: |
  A small convolutional network trained on 20,000 labelled leaf photographs.

  **Predict:** upload a JPEG of one leaf; get the disease and its probability.
readme: README.md
links:
  source_code: https://github.com/alice-lab/{id}
libraries: [PyTorch]
tasks: [Computer Vision, Classification]
categories: [inference, pre-trained]
data-type: [Image]
tags: [plants, agriculture, disease]
dates: {{created: 2026-11-01, updated: 2026-11-20}}
license: MIT
resources:
  inference: {{cpu: 1, memory_MB: 1024, gpu: 0}}
runtime:
  image: ghcr.io/alice-lab/{id}:1.0.0
  model: leaf_spotter
  port: 5000
  train: false
"""


@dataclass
class World:
    standin: GitHubStandIn
    upstream: Repo
    work: Path  # the author's clone


def upstream_files(*, with_site: bool = False) -> dict[str, bytes]:
    """A small upstream catalog; with the marketplace's mkdocs.yml and site/ when the test
    builds the preview."""
    files = {"modules.yml": INDEX}
    if with_site:
        files["mkdocs.yml"] = (REPO_ROOT / "mkdocs.yml").read_bytes()
        for path in (REPO_ROOT / "site").rglob("*"):
            if path.is_file():
                files[path.relative_to(REPO_ROOT).as_posix()] = path.read_bytes()
    src = REPO_ROOT / "catalog" / "digits-classifier"
    for path in src.rglob("*"):
        if path.is_file():
            files[f"catalog/digits-classifier/{path.relative_to(src).as_posix()}"] = (
                path.read_bytes()
            )
    return files


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    ).stdout


def make_world(tmp: Path, *, fork_delay: float = 0.5, with_site: bool = False) -> World:
    standin = GitHubStandIn(tmp / "github", fork_delay=fork_delay).start()
    standin.add_user("deepmarket", MAINTAINER_TOKEN)
    standin.add_user("alice", AUTHOR_TOKEN)
    upstream = standin.create_repo("deepmarket", "catalog", upstream_files(with_site=with_site))
    work = tmp / "work"
    git(tmp, "clone", "--quiet", standin.clone_url(upstream), str(work))
    return World(standin, upstream, work)


def fill_module(work: Path, module_id: str) -> None:
    """What an author does after `deepmarket new`: replace every placeholder."""
    folder = work / "catalog" / module_id
    (folder / "module.yml").write_text(FILLED.format(id=module_id), encoding="utf-8")
    (folder / "README.md").write_text(
        "# Leaf disease spotter\n\nTrained on 20,000 leaf photographs.\n", encoding="utf-8"
    )
    shutil.copy(REPO_ROOT / "catalog" / "digits-classifier" / "icon.svg", folder / "icon.svg")


# --- the pull request's checks, as .github/workflows/validate.yml runs them ---------------

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    import yaml

    return yaml.safe_load((WORKFLOWS / name).read_text())


def review_run(workflow: dict) -> str:
    steps = workflow["jobs"]["validate"]["steps"]
    (step,) = [s for s in steps if s.get("run", "").lstrip().startswith("deepmarket review")]
    return step["run"]


def run_review_step(checkout: Path, base: str, tmp: Path) -> tuple[int, str, Path, Path]:
    """Run validate.yml's review step, as its `run:` text, with the env the workflow sets."""
    command = review_run(workflow("validate.yml"))
    summary = tmp / "step-summary.md"
    env = {
        **os.environ,
        "BASE": base,
        "RUN_URL": "https://github.example/run/1",
        "GITHUB_STEP_SUMMARY": str(summary),
        "NO_MKDOCS_2_WARNING": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    out = subprocess.run(
        ["bash", "-e", "-c", command],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out.returncode, out.stdout + out.stderr, summary, checkout / "review" / "comment.md"
