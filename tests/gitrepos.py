"""Real git repositories for the sync tests: made with the git CLI, served over HTTP by git's
own `git http-backend` through `deepmarket.devcluster.gitserve` (what the demo serves the
checkout with).

The server can demand basic auth, go away (connection refused) and come back on its port,
and a repository can be deleted or force-pushed — the failures the sync must survive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deepmarket.devcluster.gitserve import HTTP_BACKEND, GitHttpServer  # noqa: F401 (re-export)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Catalog Maintainer",
    "GIT_AUTHOR_EMAIL": "maintainer@example.org",
    "GIT_COMMITTER_NAME": "Catalog Maintainer",
    "GIT_COMMITTER_EMAIL": "maintainer@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def need_git() -> None:
    if shutil.which("git") is None or not HTTP_BACKEND.exists():
        pytest.skip("git and git-http-backend are needed (Debian package git)")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV}, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def init_repo(path: Path, branch: str = "main") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    return path


def commit_all(work: Path, message: str) -> str:
    """Commit everything in the work tree (additions, changes, deletions); the new commit id."""
    git(work, "add", "-A")
    git(work, "commit", "-q", "--allow-empty", "-m", message)
    return git(work, "rev-parse", "HEAD")


def bare_clone(work: Path, bare: Path) -> Path:
    git(work.parent, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def push(work: Path, bare: Path, branch: str = "main", force: bool = False) -> str:
    args = ["push", "-q", str(bare), f"HEAD:refs/heads/{branch}"]
    if force:
        args.insert(1, "--force")
    git(work, *args)
    return git(work, "rev-parse", "HEAD")
