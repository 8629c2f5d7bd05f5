"""The pure decisions of `deepmarket submit`: upstream from a remote, branch names, the
commit's tree, modules.yml, the pull request's text, and GitHub's errors as one line."""

from __future__ import annotations

import pygit2
import pytest

from deepmarket.catalog.scaffold import append_to_index
from deepmarket.contrib import plan
from deepmarket.contrib.errors import describe
from deepmarket.errors import UsageError


@pytest.mark.parametrize(
    ("url", "owner", "name", "web"),
    [
        (
            "https://github.com/deepmarket/catalog.git",
            "deepmarket",
            "catalog",
            "https://github.com",
        ),
        ("https://github.com/deepmarket/catalog", "deepmarket", "catalog", "https://github.com"),
        ("git@github.com:alice/my.catalog.git", "alice", "my.catalog", "https://github.com"),
        ("ssh://git@github.com/alice/cat.git", "alice", "cat", "https://github.com"),
        ("git@ghe.example.org:lab/catalog.git", "lab", "catalog", "https://ghe.example.org"),
        ("http://127.0.0.1:8123/lab/catalog.git", "lab", "catalog", "http://127.0.0.1:8123"),
    ],
)
def test_remote_urls_name_the_upstream(url, owner, name, web):
    found = plan.parse_remote(url)
    assert found == plan.Upstream(owner, name, web)
    assert found.enterprise == (web != "https://github.com")


@pytest.mark.parametrize(
    "url", ["/srv/git/catalog.git", "file:///srv/catalog", "https://github.com/only-owner"]
)
def test_remote_urls_without_owner_and_name_are_none(url):
    assert plan.parse_remote(url) is None


def test_upstream_remote_wins_over_origin():
    remotes = {
        "origin": "git@github.com:alice/catalog.git",
        "upstream": "https://github.com/deepmarket/catalog.git",
    }
    assert plan.choose_remote(remotes).full_name == "deepmarket/catalog"
    assert plan.choose_remote({"origin": remotes["origin"]}).full_name == "alice/catalog"
    assert plan.choose_remote({"mine": remotes["origin"]}) is None


def test_repo_argument_must_be_owner_slash_name():
    assert plan.parse_repo("deepmarket/catalog").full_name == "deepmarket/catalog"
    with pytest.raises(UsageError, match="not owner/name"):
        plan.parse_repo("catalog")


def test_branch_names():
    assert plan.branch_name("leaf-spotter", listed_upstream=False) == "add-leaf-spotter"
    assert plan.branch_name("leaf-spotter", listed_upstream=True) == "update-leaf-spotter"


def test_tree_sha_matches_what_git_writes(tmp_path):
    files = {
        "module.yml": b"id: x\n",
        "README.md": b"# x\n",
        "samples/seven.png": b"\x89PNG...",
        "samples/deeper/a.txt": b"a",
        "samples-list.txt": b"sorted after the samples/ tree, as git sorts",
    }
    repo = pygit2.init_repository(str(tmp_path / "r"), bare=True)

    def write(node: dict) -> pygit2.Oid:
        builder = repo.TreeBuilder()
        for name, value in node.items():
            if isinstance(value, dict):
                builder.insert(name, write(value), pygit2.GIT_FILEMODE_TREE)
            else:
                builder.insert(name, repo.create_blob(value), pygit2.GIT_FILEMODE_BLOB)
        return builder.write()

    nested: dict = {}
    for path, data in files.items():
        node = nested
        *dirs, name = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = data
    assert plan.git_tree_sha(files) == str(write(nested))
    assert plan.git_blob_sha(b"a") == str(repo.create_blob(b"a"))


def test_tree_changes_add_files_delete_removed_ones_and_replace_the_index():
    entries = plan.tree_changes(
        "leaf", {"module.yml": "a" * 40, "icon.svg": "b" * 40}, ["module.yml", "old.png"], "c" * 40
    )
    by_path = {e["path"]: e["sha"] for e in entries}
    assert by_path == {
        "catalog/leaf/icon.svg": "b" * 40,
        "catalog/leaf/module.yml": "a" * 40,
        "catalog/leaf/old.png": None,  # GitHub's create-tree deletes a path given sha null
        "modules.yml": "c" * 40,
    }
    assert all(e["mode"] == "100644" and e["type"] == "blob" for e in entries)


UPSTREAM_INDEX = """\
# Upstream's comments stay.
modules:
  - id: digits-classifier
    deploy: true  # keep running
"""


def test_index_appends_a_new_module_and_keeps_upstream_text():
    out = plan.index_with_entry(UPSTREAM_INDEX, "leaf", deploy=False)
    assert out.startswith(UPSTREAM_INDEX)
    assert out == append_to_index(UPSTREAM_INDEX, "leaf", deploy=False)


def test_index_keeps_an_existing_entry_or_changes_only_its_deploy_flag():
    assert plan.index_with_entry(UPSTREAM_INDEX, "digits-classifier", True) == UPSTREAM_INDEX
    out = plan.index_with_entry(UPSTREAM_INDEX, "digits-classifier", False)
    assert "deploy: false # keep running" in out
    assert out.startswith("# Upstream's comments stay.")


def test_pr_body_summarises_the_module():
    data = {
        "id": "leaf",
        "title": "Leaf | spotter",
        "summary": "Spots diseases.",
        "categories": ["inference", "trainable"],
        "tasks": ["Classification"],
        "libraries": ["PyTorch"],
        "license": "MIT",
        "links": {"source_code": "https://github.com/a/leaf"},
        "resources": {
            "inference": {"cpu": 1, "memory_MB": 1024, "gpu": 0},
            "training": {"cpu": 4, "memory_MB": 8000, "gpu": 1, "gpu_memory_MB": 4000},
        },
        "runtime": {"image": "ghcr.io/a/leaf:1.0", "model": "leaf", "train": True},
    }
    body = plan.pr_body(
        data,
        deploy=True,
        listed_upstream=False,
        checked="no problem",
        files=["catalog/leaf/module.yml", "modules.yml"],
    )
    assert body.startswith(plan.MARKER)
    for expected in (
        "adds the module **Leaf \\| spotter**",
        "| Categories | inference, trainable |",
        "| Image | `ghcr.io/a/leaf:1.0` |",
        "| Licence | MIT |",
        "| Inference resources | 1 CPU, 1024 MB memory, no GPU |",
        "| Training resources | 4 CPU, 8000 MB memory, 1 GPU, 4000 MB GPU memory |",
        "| Deploy on merge | yes",
        "**Validation before submitting:** no problem",
        "- `modules.yml`",
    ):
        assert expected in body
    assert plan.pr_title("leaf", "Leaf", False) == "Add module leaf: Leaf"
    assert plan.pr_title("leaf", "Leaf", True) == "Update module leaf: Leaf"


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "message", "errors", "headers", "expected"),
    [
        (401, "Bad credentials", [], {}, "GitHub refused the token (401 Bad credentials)"),
        (403, "Resource not accessible by personal access token", [], {}, "token may lack a scope"),
        (
            403,
            "Resource protected by organization SAML enforcement",
            [],
            {"x-github-sso": "required; url=https://github.com/orgs/x/sso?token=abc"},
            "SAML single sign-on",
        ),
        (404, "Not Found", [], {}, "check the repository name (--repo owner/name)"),
        (
            422,
            "Validation Failed",
            [{"resource": "PullRequest", "field": "base", "code": "invalid"}],
            {},
            "422 Validation Failed: PullRequest base invalid",
        ),
        (
            403,
            "API rate limit exceeded for user ID 1.",
            [],
            {
                "x-ratelimit-remaining": "0",
                "x-ratelimit-limit": "5000",
                "x-ratelimit-reset": str(int(NOW) + 600),
            },
            "rate limit (5000 requests an hour) is used up while x: it resets at "
            "08:10:00 UTC (in 10 min)",
        ),
        (
            429,
            "You have exceeded a secondary rate limit.",
            [],
            {"retry-after": "60"},
            "secondary rate limit is used up while x: wait 60 s",
        ),
        (502, "Server Error", [], {}, "try again in a few minutes"),
    ],
)
def test_github_errors_become_one_line(status, message, errors, headers, expected):
    line = describe(status, message, errors, headers, doing="x", now=NOW)
    assert expected in line
    assert "\n" not in line
