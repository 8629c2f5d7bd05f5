"""The read-only git server the demo serves the checkout's repository with (a work tree, as
a developer's checkout is), fetched by the git CLI and by libgit2 as the sync fetches."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pygit2
import pytest
from gitrepos import commit_all, git, init_repo, need_git

from deepmarket.devcluster.gitserve import GitHttpServer, read_only_request, split_repo


def test_read_only_answers_fetches_only():
    assert read_only_request("GET", "/c/info/refs", "service=git-upload-pack")
    assert read_only_request("POST", "/c/git-upload-pack", "")
    assert not read_only_request("GET", "/c/info/refs", "service=git-receive-pack")
    assert not read_only_request("POST", "/c/git-receive-pack", "")
    assert not read_only_request("GET", "/c/HEAD", "")  # dumb HTTP: files of the repository
    assert not read_only_request("GET", "/c/objects/info/packs", "")


def test_split_repo_serves_named_repositories_only():
    repos = {"checkout": Path("/src/x")}
    assert split_repo("/checkout/info/refs", repos) == (Path("/src/x"), "/info/refs")
    assert split_repo("/other/info/refs", repos) is None
    assert split_repo("/../etc/info/refs", repos) is None


@pytest.fixture
def served(tmp_path):
    need_git()
    work = init_repo(tmp_path / "work", branch="main")
    (work / "modules.yml").write_text("modules: []\n")
    head = commit_all(work, "first")
    # A linked work tree (what `git worktree add` makes): its .git is a file.
    git(work, "worktree", "add", "-q", str(tmp_path / "linked"), "-b", "topic")
    server = GitHttpServer(tmp_path, repos={"checkout": tmp_path / "linked"}, read_only=True)
    try:
        yield server, work, head
    finally:
        server.stop()


def test_a_work_tree_is_fetched_read_only(served, tmp_path):
    server, _work, head = served
    url = server.url("checkout")
    refs = git(tmp_path, "ls-remote", url)
    assert f"{head}\trefs/heads/main" in refs and "refs/heads/topic" in refs
    git(tmp_path, "clone", "-q", url, str(tmp_path / "clone"))
    assert git(tmp_path / "clone", "rev-parse", "HEAD") == head
    # libgit2 (the sync's fetch) too.
    repo = pygit2.init_repository(str(tmp_path / "mirror"), bare=True)
    repo.remotes.create_anonymous(url).fetch(["+refs/heads/*:refs/heads/*"])
    assert str(repo.references["refs/heads/main"].target) == head
    # Nothing else: no push, no dumb-HTTP reads, no other repository.
    (tmp_path / "clone" / "x").write_text("x")
    commit_all(tmp_path / "clone", "pushed?")
    with pytest.raises(AssertionError, match=r"403|read-only"):
        git(tmp_path / "clone", "push", "-q", url, "HEAD:refs/heads/main")
    for path, code in (("/checkout/HEAD", 403), ("/work/info/refs?service=git-upload-pack", 404)):
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10)
        assert answer.value.code == code
