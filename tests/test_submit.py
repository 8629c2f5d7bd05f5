"""`deepmarket submit` against the GitHub stand-in: real github3.py requests, real git
repositories behind them, real forks, branches, commits, pull requests and webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import github3
import pygit2
import pytest

from deepmarket.cli import main
from tests.submit_helpers import (
    AUTHOR_TOKEN,
    MAINTAINER_TOKEN,
    World,
    fill_module,
    git,
    make_world,
)

MODULE = "leaf-spotter"


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = make_world(tmp_path)
    monkeypatch.chdir(w.work)
    monkeypatch.setenv("GITHUB_TOKEN", AUTHOR_TOKEN)
    yield w
    w.standin.stop()
    assert not w.standin.crashes, w.standin.crashes[0]


def submit(world: World, *args: str) -> int:
    return main(["submit", *args, "--github-url", world.standin.url])


def new_module(world: World, capsys) -> None:
    assert main(["new", MODULE]) == 0
    fill_module(world.work, MODULE)
    capsys.readouterr()


def branch_commit(world: World, owner: str, branch: str) -> pygit2.Commit:
    repo = world.standin.repos[f"{owner}/catalog"].git()
    return repo.revparse_single(f"refs/heads/{branch}").peel(pygit2.Commit)


def files_of(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for obj in tree:
        if obj.type_str == "tree":
            out.update(files_of(repo, repo[obj.id], f"{prefix}{obj.name}/"))
        else:
            out[prefix + obj.name] = repo[obj.id].data
    return out


def test_new_then_submit_opens_a_pull_request_from_a_fork(world, capsys):
    new_module(world, capsys)
    assert submit(world, MODULE) == 0
    out, err = capsys.readouterr()
    assert (
        out.strip()
        == f"{MODULE}: pull request #1 opened {world.standin.url}/deepmarket/catalog/pull/1"
    )
    assert "using your fork" in err
    standin = world.standin
    # The fork was asynchronous: its git data answered 409 before it was ready.
    assert any(
        e.path.startswith("/repos/alice/catalog/git/") and e.status == 409
        for e in standin.exchanges
    )
    (pull,) = standin.pulls["deepmarket/catalog"]
    assert (pull.head_repo.full_name, pull.head_ref, pull.base_ref) == (
        "alice/catalog",
        f"add-{MODULE}",
        "main",
    )
    assert pull.title == f"Add module {MODULE}: Leaf disease spotter"
    for expected in (
        "| Categories | inference, pre-trained |",
        "`ghcr.io/alice-lab/leaf-spotter:1.0.0`",
        "| Licence | MIT |",
        "no problem",
    ):
        assert expected in pull.body
    assert pull.maintainer_can_modify
    # One commit on upstream's main holding the module folder and the index change.
    commit = branch_commit(world, "alice", f"add-{MODULE}")
    upstream_main = standin.branch_sha(world.upstream, "main")
    assert [str(p) for p in commit.parent_ids] == [upstream_main]
    repo = standin.repos["alice/catalog"].git()
    files = files_of(repo, commit.tree)
    local = world.work / "catalog" / MODULE
    for name in ("module.yml", "README.md", "icon.svg"):
        assert files[f"catalog/{MODULE}/{name}"] == (local / name).read_bytes()
    index = files["modules.yml"].decode()
    assert index.startswith("# The catalog index (upstream's own comments must survive")
    assert index.rstrip().endswith(f"- id: {MODULE}\n    deploy: false")
    # The pull request's head is in the base repository, as GitHub keeps it.
    assert standin._pull_head(pull) == str(commit.id)


def test_rerun_after_an_edit_updates_the_same_branch_and_pull_request(world, capsys):
    new_module(world, capsys)
    assert submit(world, MODULE) == 0
    first = branch_commit(world, "alice", f"add-{MODULE}")
    capsys.readouterr()

    assert submit(world, MODULE) == 0  # nothing changed
    out, _ = capsys.readouterr()
    assert "pull request #1 is up to date" in out
    assert branch_commit(world, "alice", f"add-{MODULE}").id == first.id

    readme = world.work / "catalog" / MODULE / "README.md"
    readme.write_text("# Leaf disease spotter\n\nNow with a confusion matrix.\n")
    (world.work / "catalog" / MODULE / "icon.svg").unlink()
    module_yml = world.work / "catalog" / MODULE / "module.yml"
    module_yml.write_text(module_yml.read_text().replace("Spot five", "Spot six"))
    assert submit(world, MODULE) == 0
    out, _ = capsys.readouterr()
    assert out.strip().endswith(
        "pull request #1 updated " + f"{world.standin.url}/deepmarket/catalog/pull/1"
    )
    second = branch_commit(world, "alice", f"add-{MODULE}")
    assert second.id != first.id
    assert second.parent_ids == first.parent_ids  # still one commit on upstream's main
    files = files_of(world.standin.repos["alice/catalog"].git(), second.tree)
    assert b"confusion matrix" in files[f"catalog/{MODULE}/README.md"]
    assert f"catalog/{MODULE}/icon.svg" not in files
    (pull,) = world.standin.pulls["deepmarket/catalog"]
    assert "Spot six" in pull.body
    assert f"catalog/{MODULE}/icon.svg (deleted)" not in pull.body  # never upstream: no delete


def test_without_ids_submit_finds_the_modules_that_differ(world, capsys):
    new_module(world, capsys)
    assert submit(world) == 0
    out, err = capsys.readouterr()
    assert f"modules that differ from deepmarket/catalog@main: {MODULE}" in err
    assert "pull request #1 opened" in out


def test_a_maintainer_pushes_update_branch_to_upstream_without_forking(world, capsys, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", MAINTAINER_TOKEN)
    module_yml = world.work / "catalog" / "digits-classifier" / "module.yml"
    module_yml.write_text(module_yml.read_text().replace("tags: [digits,", "tags: [digits, mnist,"))
    assert submit(world, "digits-classifier") == 0
    out, err = capsys.readouterr()
    assert "fork" not in err
    assert not any(r.parent for r in world.standin.repos.values())
    (pull,) = world.standin.pulls["deepmarket/catalog"]
    assert pull.head_repo is world.upstream and pull.head_ref == "update-digits-classifier"
    assert pull.title.startswith("Update module digits-classifier:")
    assert "pull request #1 opened" in out


def test_upstream_already_has_it(world, capsys):
    assert submit(world, "digits-classifier") == 0
    _, err = capsys.readouterr()
    assert "already has it exactly as it is here" in err
    assert world.standin.pulls["deepmarket/catalog"] == []


def test_an_invalid_module_is_refused_before_talking_to_github(world, capsys):
    assert main(["new", MODULE]) == 0
    capsys.readouterr()
    assert submit(world, MODULE) == 1  # still the scaffold: placeholders
    _, err = capsys.readouterr()
    # The validator's own lines, strict as the pull request's CI is: placeholders refuse.
    assert f"catalog/{MODULE}/module.yml:9:10: summary: still holds the placeholder 'TODO'" in err
    assert "runtime.image: still holds the placeholder 'your-org'" in err
    assert (
        err.strip().splitlines()[-1].startswith(f"deepmarket: error: {MODULE}: ")
        and "fix them and run `deepmarket submit leaf-spotter` again" in err
    )
    fill_module(world.work, MODULE)
    module_yml = world.work / "catalog" / MODULE / "module.yml"
    module_yml.write_text(module_yml.read_text().replace("license: MIT", "license: mit"))
    assert submit(world, MODULE) == 1
    _, err = capsys.readouterr()
    assert "license: 'mit' is not an SPDX licence id; write it as 'MIT'" in err
    assert world.standin.exchanges == []


def test_token_sources_and_refusals(world, capsys, monkeypatch, tmp_path):
    new_module(world, capsys)
    monkeypatch.delenv("GITHUB_TOKEN")
    assert submit(world, MODULE) == 2
    _, err = capsys.readouterr()
    assert "no GitHub token: set GITHUB_TOKEN" in err and "--token-file" in err
    inside = world.work / "token.txt"
    inside.write_text(AUTHOR_TOKEN + "\n")
    assert submit(world, MODULE, "--token-file", str(inside)) == 2
    _, err = capsys.readouterr()
    assert "is inside the repository and not ignored by git" in err
    (world.work / ".gitignore").write_text("token.txt\n")
    empty = tmp_path / "empty-token"
    empty.write_text("\n")
    assert submit(world, MODULE, "--token-file", str(empty)) == 2
    assert "must hold the token alone on one line" in capsys.readouterr().err
    assert submit(world, MODULE, "--token-file", str(tmp_path / "missing")) == 2
    assert "does not exist" in capsys.readouterr().err
    outside = tmp_path / "token"
    outside.write_text(AUTHOR_TOKEN + "\n")
    assert submit(world, MODULE, "--token-file", str(outside)) == 0
    out, err = capsys.readouterr()
    assert "pull request #1 opened" in out
    assert AUTHOR_TOKEN not in out + err
    # Never stored: not in the work tree, the git config or anything submitted.
    for path in world.work.rglob("*"):
        if path.is_file() and path.name != "token.txt":
            assert AUTHOR_TOKEN.encode() not in path.read_bytes(), path
    for exchange in world.standin.exchanges:
        assert AUTHOR_TOKEN not in json.dumps(exchange.request)


def error_line(capsys) -> str:
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("deepmarket: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_github_errors_are_one_clear_line_each(world, capsys, monkeypatch):
    new_module(world, capsys)
    standin = world.standin

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_revoked")
    assert submit(world, MODULE) == 1
    line = error_line(capsys)
    assert "GitHub refused the token (401 Bad credentials) while reading deepmarket/catalog" in line
    assert "ghp_revoked" not in line

    monkeypatch.setenv("GITHUB_TOKEN", AUTHOR_TOKEN)
    assert submit(world, MODULE, "--repo", "deepmarket/no-such-catalog") == 1
    assert (
        "GitHub found nothing (404 Not Found) while reading deepmarket/no-such-catalog"
        in error_line(capsys)
    )

    world.upstream.archived = True
    assert submit(world, MODULE) == 1
    line = error_line(capsys)
    assert "GitHub refused access (403 Repository was archived so is read-only)" in line
    assert "while opening the pull request in deepmarket/catalog" in line
    world.upstream.archived = False

    standin.fail_next(
        "POST",
        r"/pulls$",
        422,
        {
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "field": "base", "code": "invalid"}],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        },
    )
    assert submit(world, MODULE) == 1
    assert (
        "GitHub rejected the request (422 Validation Failed: PullRequest base invalid) while "
        "opening the pull request in deepmarket/catalog" in error_line(capsys)
    )

    standin.fail_next(
        "POST",
        r"/git/blobs$",
        429,
        {"message": "You have exceeded a secondary rate limit.", "documentation_url": "x"},
        {"Retry-After": "60"},
    )
    assert submit(world, MODULE) == 1
    line = error_line(capsys)
    assert "GitHub's secondary rate limit is used up while uploading catalog/leaf-spotter/" in line
    assert "wait 60 s (GitHub's Retry-After)" in line

    reset = int(time.time()) + 1800
    standin.add_user("bob", "ghp_bob", rate_limit=3).reset = reset
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_bob")
    assert submit(world, MODULE) == 1
    line = error_line(capsys)
    assert "GitHub's rate limit (3 requests an hour) is used up while" in line
    assert time.strftime("%H:%M:%S", time.gmtime(reset)) + " UTC (in 30 min)" in line


def test_a_fork_that_never_becomes_ready_times_out_clearly(world, capsys):
    new_module(world, capsys)
    world.standin.fork_delay = 600
    assert submit(world, MODULE, "--fork-timeout", "1") == 1
    line = error_line(capsys)
    assert "the fork alice/catalog is not ready after 1s" in line
    assert "run submit again in a few minutes" in line


def test_a_taken_fork_name_gets_githubs_next_name(world, capsys):
    world.standin.create_repo("alice", "catalog", {"README.md": b"alice's own catalog\n"})
    new_module(world, capsys)
    assert submit(world, MODULE) == 0
    (pull,) = world.standin.pulls["deepmarket/catalog"]
    assert pull.head_repo.full_name == "alice/catalog-1"


class _HookReceiver(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers, body))  # case-insensitive, like HTTP
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_merging_sends_a_signed_push_webhook_with_the_merge(world, capsys, tmp_path):
    received: list = []
    handler = type("Receiver", (_HookReceiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "s3cret-hook"
    world.standin.add_webhook(
        world.upstream, f"http://127.0.0.1:{server.server_address[1]}/hook", secret
    )
    try:
        new_module(world, capsys)
        assert submit(world, MODULE) == 0
        before = world.standin.branch_sha(world.upstream, "main")
        gh = github3.GitHubEnterprise(world.standin.url, token=MAINTAINER_TOKEN)
        pr = gh.pull_request("deepmarket", "catalog", 1)
        assert pr.mergeable and pr.state == "open"
        assert pr.merge(commit_message="Welcome, leaf spotter")
        after = world.standin.branch_sha(world.upstream, "main")
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
    ((headers, body),) = received
    assert headers["X-GitHub-Event"] == "push"
    assert len(headers["X-GitHub-Delivery"]) == 36
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
    payload = json.loads(body)
    assert (payload["ref"], payload["before"], payload["after"]) == (
        "refs/heads/main",
        before,
        after,
    )
    assert payload["repository"]["full_name"] == "deepmarket/catalog"
    assert payload["repository"]["clone_url"] == world.standin.clone_url(world.upstream)
    assert f"catalog/{MODULE}/module.yml" in payload["head_commit"]["added"]
    assert "modules.yml" in payload["head_commit"]["modified"]
    # The merge is real: a clone of upstream's main has the module.
    git(tmp_path, "clone", "--quiet", world.standin.clone_url(world.upstream), "merged")
    assert (tmp_path / "merged" / "catalog" / MODULE / "module.yml").is_file()
    merged = gh.pull_request("deepmarket", "catalog", 1)
    assert merged.is_merged() and merged.merge_commit_sha == after


def test_pushes_over_git_http_are_real_and_need_the_token(world, tmp_path):
    work = world.work
    git(work, "checkout", "--quiet", "-b", "docs")
    (work / "NOTES.md").write_text("notes\n")
    git(work, "add", "NOTES.md")
    git(
        work,
        "-c",
        "user.name=M",
        "-c",
        "user.email=m@example.org",
        "commit",
        "--quiet",
        "-m",
        "notes",
    )
    url = world.standin.clone_url(world.upstream)
    with pytest.raises(subprocess.CalledProcessError) as refused:
        git(work, "-c", "credential.helper=", "push", "--quiet", url, "docs")
    assert "Authentication failed" in refused.value.stderr or "Username" in refused.value.stderr
    assert world.standin.branch_sha(world.upstream, "docs") is None
    authed = url.replace("http://", f"http://deepmarket:{MAINTAINER_TOKEN}@")
    git(work, "push", "--quiet", authed, "docs")
    assert (
        world.standin.branch_sha(world.upstream, "docs") == git(work, "rev-parse", "HEAD").strip()
    )


def test_the_upstream_comes_from_the_clones_remote(world, capsys):
    """No --repo, no --github-url: `origin` of the author's clone names the server and repo
    (a host other than github.com is taken as GitHub Enterprise, API under /api/v3)."""
    new_module(world, capsys)
    assert main(["submit", MODULE]) == 0
    out, _ = capsys.readouterr()
    assert f"{world.standin.url}/deepmarket/catalog/pull/1" in out


def test_without_a_remote_it_asks_for_repo(world, capsys):
    new_module(world, capsys)
    git(world.work, "remote", "remove", "origin")
    assert main(["submit", MODULE]) == 2
    assert "pass --repo OWNER/NAME" in error_line(capsys)
    assert main(["submit", MODULE, "--repo", "not a repo"]) == 2
    assert "is not owner/name" in error_line(capsys)
