"""A stand-in for GitHub, for tests: the REST endpoints `deepmarket submit` uses, laid out
as GitHub Enterprise serves them (`<root>/api/v3/...`), over real bare git repositories
that `git` can clone, fetch and push (smart HTTP through `git http-backend`).

It follows GitHub's documented contract, written down as JSON Schemas in
`tests/github_contract/` and checked by `tests/test_github_contract.py`: paths, methods,
status codes, the response fields, asynchronous forks (202 at once, git data later),
422 for an existing ref or pull request, rate-limit headers, and merging a pull request
sends a `push` webhook signed with HMAC-SHA256 (X-Hub-Signature-256).

Every exchange is recorded in `exchanges` so the contract test can validate what was
actually sent. Not shipped: this lives under tests/.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import os
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pygit2

DOCS = "https://docs.github.com/rest"
_ids = itertools.count(1000)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, errors: list | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "documentation_url": DOCS}
        if errors is not None:
            self.body["errors"] = errors
        self.body.update(extra)
        self.headers: dict[str, str] = {}


@dataclass
class User:
    login: str
    id: int
    token: str
    rate_limit: int = 5000
    used: int = 0
    reset: int = 0


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    path: Path
    default_branch: str = "main"
    private: bool = False
    archived: bool = False
    parent: Repo | None = None
    collaborators: set[str] = field(default_factory=set)
    ready_at: float = 0.0  # forks: git data appears at this time.monotonic() …
    pending_polls: int = 0  # … and after this many git requests answered 409
    hooks: list[tuple[str, str]] = field(default_factory=list)  # (url, secret)
    created_at: str = field(default_factory=_now)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def git(self) -> pygit2.Repository:
        return pygit2.Repository(str(self.path))


@dataclass
class Pull:
    number: int
    id: int
    base_repo: Repo
    head_repo: Repo
    head_ref: str
    base_ref: str
    title: str
    body: str | None
    user: User
    maintainer_can_modify: bool = False
    state: str = "open"
    merged: bool = False
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    merged_by: User | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    closed_at: str | None = None


@dataclass
class Exchange:
    method: str
    path: str  # the path below /api/v3, without the query
    query: dict[str, list[str]]
    request: Any
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Delivery:
    url: str
    event: str
    delivery: str
    headers: dict[str, str]
    payload: bytes
    status: int | None = None
    error: str | None = None


class GitHubStandIn:
    """Start with `start()`; `url` is the web root (pass it as --github-url)."""

    def __init__(self, root: Path, *, fork_delay: float = 0.5, fork_polls: int = 1) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.fork_delay = fork_delay  # a new fork's git data is missing this long …
        self.fork_polls = fork_polls  # … and for this many requests (so tests see it)
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}
        self.pulls: dict[str, list[Pull]] = {}
        self.exchanges: list[Exchange] = []
        self.crashes: list[str] = []  # tracebacks of the stand-in's own bugs
        self.deliveries: list[Delivery] = []
        self.faults: list[tuple[str, re.Pattern[str], int, dict, dict[str, str]]] = []
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.url = ""

    # --- set-up (what a test arranges; GitHub's web UI would do these) ------------------

    def start(self) -> GitHubStandIn:
        standin = self

        class Handler(_Handler):
            owner = standin

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def api(self) -> str:
        return f"{self.url}/api/v3"

    def add_user(self, login: str, token: str, *, rate_limit: int = 5000) -> User:
        user = User(login, next(_ids), token, rate_limit, 0, int(time.time()) + 3600)
        self.users[token] = user
        return user

    def user_by_login(self, login: str) -> User | None:
        return next((u for u in self.users.values() if u.login == login), None)

    def create_repo(
        self,
        owner: str,
        name: str,
        files: dict[str, bytes] | None = None,
        *,
        default_branch: str = "main",
        private: bool = False,
        collaborators: tuple[str, ...] = (),
    ) -> Repo:
        """A repository with one commit holding `files` on its default branch."""
        path = self.root / owner / f"{name}.git"
        git = pygit2.init_repository(str(path), bare=True, initial_head=default_branch)
        if files:
            tree = _write_tree(git, {k: (v, "100644") for k, v in files.items()})
            sig = pygit2.Signature(owner, f"{owner}@users.noreply.github.com")
            git.create_commit(f"refs/heads/{default_branch}", sig, sig, "Initial commit", tree, [])
        # Let `git http-backend` serve pushes without a hook of ours getting in the way.
        git.config["http.receivepack"] = True
        repo = Repo(owner, name, next(_ids), path, default_branch, private)
        repo.collaborators = {owner, *collaborators}
        self.repos[repo.full_name] = repo
        self.pulls[repo.full_name] = []
        return repo

    def add_webhook(self, repo: Repo, url: str, secret: str) -> None:
        repo.hooks.append((url, secret))

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        status: int,
        body: dict,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next matching request with this error, as GitHub would on a bad day."""
        self.faults.append((method, re.compile(path_pattern), status, body, headers or {}))

    def clone_url(self, repo: Repo) -> str:
        return f"{self.url}/{repo.full_name}.git"

    def branch_sha(self, repo: Repo, branch: str) -> str | None:
        ref = repo.git().references.get(f"refs/heads/{branch}")
        return str(ref.target) if ref is not None else None

    # --- JSON of GitHub's objects -------------------------------------------------------

    def user_json(self, user: User) -> dict[str, Any]:
        api, login = self.api, user.login
        data = {
            "login": login,
            "id": user.id,
            "node_id": _node("U", user.id),
            "avatar_url": f"{self.url}/avatars/{login}",
            "gravatar_id": "",
            "url": f"{api}/users/{login}",
            "html_url": f"{self.url}/{login}",
            "followers_url": f"{api}/users/{login}/followers",
            "following_url": f"{api}/users/{login}/following{{/other_user}}",
            "gists_url": f"{api}/users/{login}/gists{{/gist_id}}",
            "starred_url": f"{api}/users/{login}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/users/{login}/subscriptions",
            "organizations_url": f"{api}/users/{login}/orgs",
            "repos_url": f"{api}/users/{login}/repos",
            "events_url": f"{api}/users/{login}/events{{/privacy}}",
            "received_events_url": f"{api}/users/{login}/received_events",
            "type": "User",
            "site_admin": False,
        }
        return data

    def _owner_json(self, login: str) -> dict[str, Any]:
        user = self.user_by_login(login) or User(login, abs(hash(login)) % 10**6, "")
        return self.user_json(user)

    def repo_json(self, repo: Repo, viewer: User | None, *, full: bool = True) -> dict[str, Any]:
        api = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.url}/{repo.full_name}"
        data: dict[str, Any] = {
            "id": repo.id,
            "node_id": _node("R", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self._owner_json(repo.owner),
            "html_url": html,
            "description": None,
            "fork": repo.parent is not None,
            "url": api,
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{api}/assignees{{/user}}",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "comments_url": f"{api}/comments{{/number}}",
            "commits_url": f"{api}/commits{{/sha}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "contributors_url": f"{api}/contributors",
            "deployments_url": f"{api}/deployments",
            "downloads_url": f"{api}/downloads",
            "events_url": f"{api}/events",
            "forks_url": f"{api}/forks",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_url": f"git://{urlsplit(self.url).netloc}/{repo.full_name}.git",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "issues_url": f"{api}/issues{{/number}}",
            "keys_url": f"{api}/keys{{/key_id}}",
            "labels_url": f"{api}/labels{{/name}}",
            "languages_url": f"{api}/languages",
            "merges_url": f"{api}/merges",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "releases_url": f"{api}/releases{{/id}}",
            "ssh_url": f"git@{urlsplit(self.url).hostname}:{repo.full_name}.git",
            "stargazers_url": f"{api}/stargazers",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "tags_url": f"{api}/tags",
            "teams_url": f"{api}/teams",
            "trees_url": f"{api}/git/trees{{/sha}}",
            "clone_url": self.clone_url(repo),
            "mirror_url": None,
            "hooks_url": f"{api}/hooks",
            "svn_url": html,
            "homepage": None,
            "language": None,
            "forks_count": sum(r.parent is repo for r in self.repos.values()),
            "stargazers_count": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": repo.default_branch,
            "open_issues_count": sum(p.state == "open" for p in self.pulls[repo.full_name]),
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": True,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": repo.archived,
            "disabled": False,
            "visibility": "private" if repo.private else "public",
            "pushed_at": _now(),
            "created_at": repo.created_at,
            "updated_at": _now(),
            "allow_forking": True,
            "web_commit_signoff_required": False,
            "forks": sum(r.parent is repo for r in self.repos.values()),
            "open_issues": sum(p.state == "open" for p in self.pulls[repo.full_name]),
            "watchers": 0,
            "license": None,
        }
        if viewer is not None:
            can = viewer.login in repo.collaborators
            data["permissions"] = {
                "admin": viewer.login == repo.owner,
                "maintain": can,
                "push": can,
                "triage": can,
                "pull": True,
            }
        if full:
            data["network_count"] = 1 + len([r for r in self.repos.values() if r.parent])
            data["subscribers_count"] = 0
            if repo.parent is not None:
                data["parent"] = self.repo_json(repo.parent, None, full=False)
                source = repo.parent
                while source.parent is not None:
                    source = source.parent
                data["source"] = self.repo_json(source, None, full=False)
        return data

    def ref_json(self, repo: Repo, name: str, sha: str) -> dict[str, Any]:
        api = f"{self.api}/repos/{repo.full_name}"
        return {
            "ref": name,
            "node_id": _node("REF", abs(hash((repo.full_name, name))) % 10**8),
            "url": f"{api}/git/{name}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"},
        }

    def commit_json(self, repo: Repo, commit: pygit2.Commit) -> dict[str, Any]:
        api = f"{self.api}/repos/{repo.full_name}"

        def person(sig: pygit2.Signature) -> dict[str, str]:
            when = datetime.fromtimestamp(sig.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {"name": sig.name, "email": sig.email, "date": when}

        sha = str(commit.id)
        return {
            "sha": sha,
            "node_id": _node("C", int(sha[:7], 16)),
            "url": f"{api}/git/commits/{sha}",
            "html_url": f"{self.url}/{repo.full_name}/commit/{sha}",
            "author": person(commit.author),
            "committer": person(commit.committer),
            "message": commit.message,
            "tree": {"sha": str(commit.tree_id), "url": f"{api}/git/trees/{commit.tree_id}"},
            "parents": [
                {
                    "sha": str(p),
                    "url": f"{api}/git/commits/{p}",
                    "html_url": f"{self.url}/{repo.full_name}/commit/{p}",
                }
                for p in commit.parent_ids
            ],
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        }

    def tree_json(self, repo: Repo, tree: pygit2.Tree, recursive: bool) -> dict[str, Any]:
        api = f"{self.api}/repos/{repo.full_name}"
        entries: list[dict[str, Any]] = []

        def walk(t: pygit2.Tree, prefix: str) -> None:
            for obj in t:
                path = prefix + obj.name
                kind = "tree" if obj.type_str == "tree" else "blob"
                entry = {
                    "path": path,
                    "mode": f"{obj.filemode:06o}",  # 040000 for a tree, as GitHub writes it
                    "type": kind,
                    "sha": str(obj.id),
                    "url": f"{api}/git/{kind}s/{obj.id}",
                }
                if kind == "blob":
                    entry["size"] = obj.size
                entries.append(entry)
                if kind == "tree" and recursive:
                    walk(repo.git()[obj.id], path + "/")

        walk(tree, "")
        return {
            "sha": str(tree.id),
            "url": f"{api}/git/trees/{tree.id}",
            "tree": entries,
            "truncated": False,
        }

    def content_json(self, repo: Repo, path: str, obj: pygit2.Object, ref: str) -> dict[str, Any]:
        api = f"{self.api}/repos/{repo.full_name}"
        kind = "dir" if obj.type_str == "tree" else "file"
        web = "tree" if kind == "dir" else "blob"
        data: dict[str, Any] = {
            "type": kind,
            "size": obj.size if kind == "file" else 0,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": str(obj.id),
            "url": f"{api}/contents/{path}?ref={ref}",
            "git_url": f"{api}/git/{'trees' if kind == 'dir' else 'blobs'}/{obj.id}",
            "html_url": f"{self.url}/{repo.full_name}/{web}/{ref}/{path}",
            "download_url": None
            if kind == "dir"
            else f"{self.url}/raw/{repo.full_name}/{ref}/{path}",
        }
        data["_links"] = {"self": data["url"], "git": data["git_url"], "html": data["html_url"]}
        return data

    def pull_json(self, pull: Pull, *, full: bool = True, media: str = "") -> dict[str, Any]:
        """`media`: the Accept header; GitHub's `full`, `html` and `text` media types add
        body_html and/or body_text to the raw body."""
        base, head = pull.base_repo, pull.head_repo
        api = f"{self.api}/repos/{base.full_name}"
        html = f"{self.url}/{base.full_name}/pull/{pull.number}"
        head_sha = self.branch_sha(head, pull.head_ref) or self._pull_head(pull) or ""
        base_sha = self.branch_sha(base, pull.base_ref) or ""

        def end(repo: Repo, ref: str, sha: str) -> dict[str, Any]:
            return {
                "label": f"{repo.owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self._owner_json(repo.owner),
                "repo": self.repo_json(repo, None, full=False),
            }

        data: dict[str, Any] = {
            "url": f"{api}/pulls/{pull.number}",
            "id": pull.id,
            "node_id": _node("PR", pull.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{pull.number}",
            "commits_url": f"{api}/pulls/{pull.number}/commits",
            "review_comments_url": f"{api}/pulls/{pull.number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "statuses_url": f"{api}/statuses/{head_sha}",
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self.user_json(pull.user),
            "body": pull.body,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": end(head, pull.head_ref, head_sha),
            "base": end(base, pull.base_ref, base_sha),
            "_links": {
                rel: {"href": href}
                for rel, href in {
                    "self": f"{api}/pulls/{pull.number}",
                    "html": html,
                    "issue": f"{api}/issues/{pull.number}",
                    "comments": f"{api}/issues/{pull.number}/comments",
                    "review_comments": f"{api}/pulls/{pull.number}/comments",
                    "review_comment": f"{api}/pulls/comments{{/number}}",
                    "commits": f"{api}/pulls/{pull.number}/commits",
                    "statuses": f"{api}/statuses/{head_sha}",
                }.items()
            },
            "author_association": "OWNER"
            if pull.user.login == base.owner
            else "CONTRIBUTOR"
            if pull.user.login in base.collaborators
            else "FIRST_TIME_CONTRIBUTOR",
            "auto_merge": None,
            "draft": False,
        }
        kind = re.search(r"vnd\.github(?:\.v3)?\.(raw|text|html|full)\+json", media)
        if kind and kind.group(1) in ("html", "full"):
            import markdown

            data["body_html"] = markdown.markdown(pull.body or "", extensions=["tables"])
        if kind and kind.group(1) in ("text", "full"):
            data["body_text"] = pull.body or ""
        if kind and kind.group(1) in ("html", "text"):
            del data["body"]
        if full:
            mergeable = None if pull.merged else self._mergeable(pull) is not None
            data.update(
                {
                    "merged": pull.merged,
                    "mergeable": mergeable,
                    "rebaseable": mergeable,
                    "mergeable_state": "clean"
                    if mergeable
                    else "unknown"
                    if mergeable is None
                    else "dirty",
                    "merged_by": self.user_json(pull.merged_by) if pull.merged_by else None,
                    "comments": 0,
                    "review_comments": 0,
                    "maintainer_can_modify": pull.maintainer_can_modify,
                    "commits": self._count_commits(pull),
                    "additions": 0,
                    "deletions": 0,
                    "changed_files": self._changed_files(pull),
                }
            )
        return data

    # --- git helpers --------------------------------------------------------------------

    def _pull_head(self, pull: Pull) -> str | None:
        ref = pull.base_repo.git().references.get(f"refs/pull/{pull.number}/head")
        return str(ref.target) if ref is not None else None

    def _sync_pull_head(self, pull: Pull) -> None:
        """GitHub keeps refs/pull/<n>/head in the base repository: fetch it there."""
        if pull.state != "open":
            return
        sha = self.branch_sha(pull.head_repo, pull.head_ref)
        if sha is None:
            return
        _git(
            pull.base_repo.path,
            "fetch",
            "--quiet",
            "--no-tags",
            str(pull.head_repo.path),
            f"+refs/heads/{pull.head_ref}:refs/pull/{pull.number}/head",
        )

    def _mergeable(self, pull: Pull) -> pygit2.Index | None:
        git = pull.base_repo.git()
        head = self._pull_head(pull)
        base = self.branch_sha(pull.base_repo, pull.base_ref)
        if head is None or base is None:
            return None
        index = git.merge_commits(base, head)
        return None if index.conflicts is not None else index

    def _count_commits(self, pull: Pull) -> int:
        git = pull.base_repo.git()
        head = self._pull_head(pull)
        base = self.branch_sha(pull.base_repo, pull.base_ref)
        if head is None or base is None:
            return 0
        ahead, _ = git.ahead_behind(head, base)
        return ahead

    def _changed_files(self, pull: Pull) -> int:
        git = pull.base_repo.git()
        head = self._pull_head(pull)
        base = self.branch_sha(pull.base_repo, pull.base_ref)
        if head is None or base is None:
            return 0
        merge_base = git.merge_base(base, head)
        if merge_base is None:
            return 0
        return len(git.diff(git[merge_base].tree, git[head].tree))

    # --- webhooks -----------------------------------------------------------------------

    def _push_event(self, repo: Repo, ref: str, before: str, after: str, sender: User) -> None:
        git = repo.git()
        commit = git[after]
        changes = git.diff(git[before].tree, commit.tree) if before else None
        added, removed, modified = [], [], []
        for patch in changes or []:
            delta = patch.delta
            {"A": added, "D": removed}.get(delta.status_char(), modified).append(
                delta.new_file.path if delta.status_char() != "D" else delta.old_file.path
            )
        head = {
            "id": after,
            "tree_id": str(commit.tree_id),
            "distinct": True,
            "message": commit.message,
            "timestamp": datetime.fromtimestamp(commit.commit_time, UTC).isoformat(),
            "url": f"{self.url}/{repo.full_name}/commit/{after}",
            "author": {"name": commit.author.name, "email": commit.author.email},
            "committer": {"name": commit.committer.name, "email": commit.committer.email},
            "added": added,
            "removed": removed,
            "modified": modified,
        }
        repository = self.repo_json(repo, None, full=False)
        repository["master_branch"] = repo.default_branch
        payload = {
            "ref": ref,
            "before": before,
            "after": after,
            "created": False,
            "deleted": False,
            "forced": False,
            "base_ref": None,
            "compare": f"{self.url}/{repo.full_name}/compare/{before[:12]}...{after[:12]}",
            "commits": [head],
            "head_commit": head,
            "repository": repository,
            "pusher": {
                "name": sender.login,
                "email": f"{sender.id}+{sender.login}@users.noreply.github.com",
            },
            "sender": self.user_json(sender),
        }
        body = json.dumps(payload).encode()
        for url, secret in repo.hooks:
            delivery = Delivery(url, "push", str(uuid.uuid4()), {}, body)
            delivery.headers = {
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/standin",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": delivery.delivery,
                "X-GitHub-Hook-ID": str(abs(hash(url)) % 10**8),
                "X-Hub-Signature": "sha1="
                + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
                "X-Hub-Signature-256": "sha256="
                + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            }
            self.deliveries.append(delivery)
            threading.Thread(target=_deliver, args=(delivery,), daemon=True).start()


def _deliver(delivery: Delivery) -> None:
    request = urllib.request.Request(
        delivery.url, data=delivery.payload, headers=delivery.headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            delivery.status = response.status
    except urllib.error.HTTPError as exc:
        delivery.status = exc.code
    except OSError as exc:
        delivery.error = str(exc)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def _write_tree(git: pygit2.Repository, files: dict[str, tuple[bytes, str]]) -> pygit2.Oid:
    nested: dict[str, Any] = {}
    for path, (data, mode) in files.items():
        node = nested
        *dirs, name = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[name] = (git.create_blob(data), int(mode, 8))
    return _build(git, nested)


def _build(git: pygit2.Repository, node: dict[str, Any]) -> pygit2.Oid:
    builder = git.TreeBuilder()
    for name, value in node.items():
        if isinstance(value, dict):
            if value:
                builder.insert(name, _build(git, value), pygit2.GIT_FILEMODE_TREE)
        else:
            builder.insert(name, value[0], value[1])
    return builder.write()


def _load_tree(git: pygit2.Repository, tree: pygit2.Tree) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for obj in tree:
        if obj.type_str == "tree":
            node[obj.name] = _load_tree(git, git[obj.id])
        else:
            node[obj.name] = (obj.id, obj.filemode)
    return node


# --- request handling ------------------------------------------------------------------

_SHA = r"[0-9a-f]{40}"
_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(f"^{p}$"), h)
    for m, p, h in [
        ("GET", _REPO, "get_repo"),
        ("POST", _REPO + r"/forks", "create_fork"),
        ("GET", _REPO + r"/git/ref/(?P<ref>.+)", "get_ref"),
        ("POST", _REPO + r"/git/refs", "create_ref"),
        ("PATCH", _REPO + r"/git/refs/(?P<ref>.+)", "update_ref"),
        ("GET", _REPO + rf"/git/commits/(?P<sha>{_SHA})", "get_commit"),
        ("POST", _REPO + r"/git/commits", "create_commit"),
        ("POST", _REPO + r"/git/blobs", "create_blob"),
        ("POST", _REPO + r"/git/trees", "create_tree"),
        ("GET", _REPO + rf"/git/trees/(?P<sha>{_SHA})", "get_tree"),
        ("GET", _REPO + r"/contents(?:/(?P<path>.*))?", "get_contents"),
        ("GET", _REPO + r"/pulls", "list_pulls"),
        ("POST", _REPO + r"/pulls", "create_pull"),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)", "get_pull"),
        ("PATCH", _REPO + r"/pulls/(?P<number>\d+)", "update_pull"),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)/merge", "check_merged"),
        ("PUT", _REPO + r"/pulls/(?P<number>\d+)/merge", "merge_pull"),
    ]
]


class _Handler(BaseHTTPRequestHandler):
    owner: GitHubStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest shows failures, not traffic

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # --- plumbing -----------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("X-GitHub-Media-Type", "github.v3; param=full; format=json")
        self.send_header("X-GitHub-Request-Id", uuid.uuid4().hex[:16].upper())
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        if not parts.path.startswith("/api/v3/"):
            if ".git/" in parts.path or parts.path.endswith(".git"):
                return self._git_http(method, parts.path, parts.query)
            return self._send(404, {"message": "Not Found", "documentation_url": DOCS})
        path = unquote(parts.path[len("/api/v3") :]).rstrip("/") or "/"
        query = parse_qs(parts.query)
        raw = self._body()
        try:
            request = json.loads(raw) if raw else None
        except ValueError:
            request = raw.decode("utf-8", "replace")
        owner = self.owner
        headers: dict[str, str] = {}
        with owner.lock:
            try:
                user = self._authenticate()
                headers = self._rate_headers(user)
                status, body = self._route(method, path, query, request, user)
            except HTTPError as exc:
                status, body = exc.status, exc.body
                headers.update(exc.headers)
            except Exception:  # a bug here: answer as GitHub would, and let tests see it
                import traceback

                owner.crashes.append(traceback.format_exc())
                status, body = 500, {"message": "Server Error"}
            owner.exchanges.append(
                Exchange(method, path, query, request, status, body, dict(headers))
            )
        self._send(status, body, headers)

    def _authenticate(self) -> User | None:
        header = self.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        user = self.owner.users.get(token.strip())
        if scheme.lower() not in ("token", "bearer") or user is None:
            raise HTTPError(401, "Bad credentials")
        return user

    def _rate_headers(self, user: User | None) -> dict[str, str]:
        if user is None:
            return {}
        user.used += 1
        remaining = max(0, user.rate_limit - user.used)
        headers = {
            "X-RateLimit-Limit": str(user.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(user.reset),
            "X-RateLimit-Used": str(min(user.used, user.rate_limit)),
            "X-RateLimit-Resource": "core",
        }
        if user.used > user.rate_limit:
            error = HTTPError(403, f"API rate limit exceeded for user ID {user.id}.")
            error.headers = headers
            raise error
        return headers

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], request: Any, user: User | None
    ) -> tuple[int, Any]:
        owner = self.owner
        for i, (fmethod, pattern, status, body, fheaders) in enumerate(owner.faults):
            if fmethod == method and pattern.search(path):
                del owner.faults[i]
                error = HTTPError(status, body.get("message", ""))
                error.body = body
                error.headers = fheaders
                raise error
        for rmethod, pattern, handler in ROUTES:
            match = pattern.match(path)
            if match and rmethod == method:
                return getattr(self, handler)(
                    user=user, query=query, request=request, **match.groupdict()
                )
        if any(p.match(path) for _, p, _ in ROUTES):
            raise HTTPError(404, "Not Found")  # GitHub answers 404 for an unrouted method
        raise HTTPError(404, "Not Found")

    def _media(self) -> str:
        return self.headers.get("Accept", "")

    # --- access -------------------------------------------------------------------------

    def _repo(self, owner: str, repo: str, user: User | None) -> Repo:
        found = self.owner.repos.get(f"{owner}/{repo}")
        if found is None or (
            found.private and (user is None or user.login not in found.collaborators)
        ):
            raise HTTPError(404, "Not Found")
        return found

    def _writable(self, repo: Repo, user: User | None) -> None:
        if user is None:
            raise HTTPError(401, "Requires authentication")
        if user.login not in repo.collaborators:
            raise HTTPError(403, "Resource not accessible by personal access token")
        if repo.archived:
            raise HTTPError(403, "Repository was archived so is read-only.")

    def _git_ready(self, repo: Repo) -> pygit2.Repository:
        if time.monotonic() < repo.ready_at or repo.pending_polls > 0:
            repo.pending_polls = max(0, repo.pending_polls - 1)
            raise HTTPError(409, "Git Repository is empty.")
        return repo.git()

    @staticmethod
    def _require(request: Any, *names: str) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise HTTPError(400, "Problems parsing JSON")
        missing = [n for n in names if n not in request]
        if missing:
            raise HTTPError(
                422,
                "Invalid request.\n\n" + "\n".join(f'"{n}" wasn\'t supplied.' for n in missing),
            )
        return request

    # --- endpoints ----------------------------------------------------------------------

    def get_repo(self, owner: str, repo: str, user: User | None, **_: Any) -> tuple[int, Any]:
        return 200, self.owner.repo_json(self._repo(owner, repo, user), user)

    def create_fork(
        self, owner: str, repo: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        source = self._repo(owner, repo, user)
        if user is None:
            raise HTTPError(401, "Requires authentication")
        standin = self.owner
        existing = next(
            (r for r in standin.repos.values() if r.owner == user.login and r.parent is source),
            None,
        )
        if existing is not None:
            return 202, standin.repo_json(existing, user)
        if user.login == source.owner:
            raise HTTPError(403, "You cannot fork your own repository.")
        name = (request or {}).get("name") or source.name
        while f"{user.login}/{name}" in standin.repos:
            # GitHub picks another name when yours is taken: <name>-1, -2, ...
            stem, _, n = name.rpartition("-")
            name = f"{stem}-{int(n) + 1}" if n.isdigit() and stem else f"{name}-1"
        path = standin.root / user.login / f"{name}.git"
        fork = Repo(
            user.login,
            name,
            next(_ids),
            path,
            source.default_branch,
            source.private,
            parent=source,
            collaborators={user.login},
            ready_at=time.monotonic() + standin.fork_delay,
            pending_polls=standin.fork_polls,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # Forks share the network's objects, as on GitHub (alternates); refs are copied.
        _git(standin.root, "clone", "--bare", "--shared", "--quiet", str(source.path), str(path))
        pygit2.Repository(str(path)).config["http.receivepack"] = True
        standin.repos[fork.full_name] = fork
        standin.pulls[fork.full_name] = []
        return 202, standin.repo_json(fork, user)

    def get_ref(
        self, owner: str, repo: str, ref: str, user: User | None, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        git = self._git_ready(found)
        reference = git.references.get(f"refs/{ref}")
        if reference is None:
            raise HTTPError(404, "Not Found")
        return 200, self.owner.ref_json(found, reference.name, str(reference.target))

    def create_ref(
        self, owner: str, repo: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        self._writable(found, user)
        data = self._require(request, "ref", "sha")
        git = self._git_ready(found)
        name, sha = str(data["ref"]), str(data["sha"])
        if not name.startswith("refs/") or name.count("/") < 2:
            raise HTTPError(
                422, "Reference name must start with 'refs/' and have at least two slashes."
            )
        if not re.fullmatch(_SHA, sha) or sha not in git:
            raise HTTPError(422, "Object does not exist")
        if git.references.get(name) is not None:
            raise HTTPError(422, "Reference already exists")
        git.references.create(name, sha)
        self._after_push(found, name, user)
        return 201, self.owner.ref_json(found, name, sha)

    def update_ref(
        self, owner: str, repo: str, ref: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        self._writable(found, user)
        data = self._require(request, "sha")
        git = self._git_ready(found)
        name, sha = f"refs/{ref}", str(data["sha"])
        reference = git.references.get(name)
        if reference is None:
            raise HTTPError(422, "Reference does not exist")
        if not re.fullmatch(_SHA, sha) or sha not in git:
            raise HTTPError(422, "Object does not exist")
        old = str(reference.target)
        if not data.get("force") and old != sha:
            merge_base = git.merge_base(old, sha)
            if merge_base is None or str(merge_base) != old:
                raise HTTPError(422, "Update is not a fast forward")
        reference.set_target(sha)
        self._after_push(found, name, user)
        return 200, self.owner.ref_json(found, name, sha)

    def _after_push(self, repo: Repo, name: str, user: User | None) -> None:
        branch = name.removeprefix("refs/heads/")
        for pulls in self.owner.pulls.values():
            for pull in pulls:
                if pull.head_repo is repo and pull.head_ref == branch and pull.state == "open":
                    self.owner._sync_pull_head(pull)
                    pull.updated_at = _now()

    def get_commit(
        self, owner: str, repo: str, sha: str, user: User | None, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        git = self._git_ready(found)
        obj = git.get(sha)
        if obj is None or obj.type_str != "commit":
            raise HTTPError(404, "Not Found")
        return 200, self.owner.commit_json(found, obj)

    def create_commit(
        self, owner: str, repo: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        self._writable(found, user)
        data = self._require(request, "message", "tree")
        git = self._git_ready(found)
        tree = git.get(str(data["tree"])) if re.fullmatch(_SHA, str(data["tree"])) else None
        if tree is None or tree.type_str != "tree":
            raise HTTPError(422, "Tree SHA does not exist")
        parents = data.get("parents") or []
        for parent in parents:
            obj = git.get(str(parent)) if re.fullmatch(_SHA, str(parent)) else None
            if obj is None or obj.type_str != "commit":
                raise HTTPError(422, "Parent SHA does not exist or is not a commit object")
        assert user is not None
        default = {"name": user.login, "email": f"{user.id}+{user.login}@users.noreply.github.com"}

        def signature(person: dict[str, Any] | None) -> pygit2.Signature:
            person = {**default, **(person or {})}
            return pygit2.Signature(person["name"], person["email"])

        author = signature(data.get("author"))
        committer = signature(data.get("committer") or data.get("author"))
        oid = git.create_commit(None, author, committer, str(data["message"]), tree.id, parents)
        return 201, self.owner.commit_json(found, git[oid])

    def create_blob(
        self, owner: str, repo: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        self._writable(found, user)
        data = self._require(request, "content")
        git = self._git_ready(found)
        encoding = data.get("encoding", "utf-8")
        if encoding == "base64":
            try:
                content = base64.b64decode(str(data["content"]), validate=True)
            except (binascii.Error, ValueError):
                raise HTTPError(422, "Invalid request.\n\ncontent is not valid Base64.") from None
        elif encoding in ("utf-8", "utf8"):
            content = str(data["content"]).encode("utf-8")
        else:
            raise HTTPError(422, f"encoding {encoding!r} is not supported")
        oid = git.create_blob(content)
        return 201, {
            "url": f"{self.owner.api}/repos/{found.full_name}/git/blobs/{oid}",
            "sha": str(oid),
        }

    def create_tree(
        self, owner: str, repo: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        self._writable(found, user)
        data = self._require(request, "tree")
        git = self._git_ready(found)
        base = data.get("base_tree")
        if base:
            obj = git.get(str(base)) if re.fullmatch(_SHA, str(base)) else None
            if obj is None:
                raise HTTPError(422, "base_tree is not a valid tree oid")
            if obj.type_str == "commit":
                obj = obj.tree
            nested = _load_tree(git, obj)
        else:
            nested = {}
        for entry in data["tree"]:
            if not isinstance(entry, dict) or "path" not in entry or "mode" not in entry:
                raise HTTPError(422, "Invalid tree info")
            path = str(entry["path"]).strip("/")
            *dirs, name = path.split("/")
            node = nested
            for d in dirs:
                child = node.get(d)
                if not isinstance(child, dict):
                    child = node[d] = {}
                node = child
            if "content" in entry:
                node[name] = (
                    git.create_blob(str(entry["content"]).encode()),
                    int(entry["mode"], 8),
                )
            elif entry.get("sha") is None:
                if name not in node:
                    raise HTTPError(422, f"GitRPC::BadObjectState: {path} does not exist")
                del node[name]
            else:
                sha = str(entry["sha"])
                if not re.fullmatch(_SHA, sha) or sha not in git:
                    raise HTTPError(422, f"tree.sha {sha} is not a valid blob")
                node[name] = (pygit2.Oid(hex=sha), int(entry["mode"], 8))
        oid = _build(git, nested)
        return 201, self.owner.tree_json(found, git[oid], recursive=False)

    def get_tree(
        self, owner: str, repo: str, sha: str, user: User | None, query: dict, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        git = self._git_ready(found)
        obj = git.get(sha)
        if obj is not None and obj.type_str == "commit":
            obj = obj.tree
        if obj is None or obj.type_str != "tree":
            raise HTTPError(404, "Not Found")
        recursive = query.get("recursive", [""])[0] not in ("", "0", "false")
        return 200, self.owner.tree_json(found, obj, recursive)

    def get_contents(
        self,
        owner: str,
        repo: str,
        user: User | None,
        query: dict,
        path: str | None = None,
        **_: Any,
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        git = self._git_ready(found)
        ref = query.get("ref", [found.default_branch])[0]
        try:
            commit = git.revparse_single(ref).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            raise HTTPError(404, f"No commit found for the ref {ref}") from None
        path = (path or "").strip("/")
        obj: Any = commit.tree
        if path:
            try:
                obj = commit.tree[path]
                obj = git[obj.id]
            except KeyError:
                raise HTTPError(404, "Not Found") from None
        standin = self.owner
        if obj.type_str == "tree":
            return 200, [
                standin.content_json(found, f"{path}/{e.name}" if path else e.name, git[e.id], ref)
                for e in obj
            ]
        data = standin.content_json(found, path, obj, ref)
        data["encoding"] = "base64"
        data["content"] = base64.encodebytes(obj.data).decode("ascii")
        return 200, data

    def _pull(self, repo: Repo, number: str) -> Pull:
        for pull in self.owner.pulls[repo.full_name]:
            if pull.number == int(number):
                return pull
        raise HTTPError(404, "Not Found")

    def list_pulls(
        self, owner: str, repo: str, user: User | None, query: dict, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        state = query.get("state", ["open"])[0]
        head = query.get("head", [None])[0]
        base = query.get("base", [None])[0]
        pulls = []
        for pull in reversed(self.owner.pulls[found.full_name]):
            if state != "all" and pull.state != state:
                continue
            if head and f"{pull.head_repo.owner}:{pull.head_ref}" != head:
                continue
            if base and pull.base_ref != base:
                continue
            pulls.append(self.owner.pull_json(pull, full=False, media=self._media()))
        return 200, pulls

    def create_pull(
        self, owner: str, repo: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        if user is None:
            raise HTTPError(401, "Requires authentication")
        if found.archived:
            raise HTTPError(403, "Repository was archived so is read-only.")
        data = self._require(request, "head", "base")
        standin = self.owner
        head_owner, _, head_ref = str(data["head"]).rpartition(":")
        head_owner = head_owner or found.owner
        head_repo = (
            found
            if head_owner == found.owner
            else next(
                (r for r in standin.repos.values() if r.owner == head_owner and r.parent is found),
                None,
            )
        )
        errors = []
        if standin.branch_sha(found, str(data["base"])) is None:
            errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if head_repo is None or standin.branch_sha(head_repo, head_ref) is None:
            errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
        if errors:
            raise HTTPError(422, "Validation Failed", errors)
        assert head_repo is not None
        if not str(data.get("title") or "").strip():
            raise HTTPError(
                422,
                "Validation Failed",
                [{"resource": "PullRequest", "field": "title", "code": "missing_field"}],
            )
        for pull in standin.pulls[found.full_name]:
            if (
                pull.state == "open"
                and pull.head_repo is head_repo
                and pull.head_ref == head_ref
                and pull.base_ref == data["base"]
            ):
                raise HTTPError(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": "A pull request already exists for "
                            f"{head_owner}:{head_ref}.",
                        }
                    ],
                )
        git = found.git()
        pull = Pull(
            number=len(standin.pulls[found.full_name]) + 1,
            id=next(_ids),
            base_repo=found,
            head_repo=head_repo,
            head_ref=head_ref,
            base_ref=str(data["base"]),
            title=str(data["title"]),
            body=data.get("body"),
            user=user,
            maintainer_can_modify=bool(data.get("maintainer_can_modify"))
            and head_repo is not found,
        )
        standin.pulls[found.full_name].append(pull)
        standin._sync_pull_head(pull)
        head_sha = standin._pull_head(pull)
        base_sha = standin.branch_sha(found, pull.base_ref)
        if head_sha and base_sha and git.ahead_behind(head_sha, base_sha)[0] == 0:
            standin.pulls[found.full_name].remove(pull)
            raise HTTPError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"No commits between {pull.base_ref} and {data['head']}",
                    }
                ],
            )
        return 201, standin.pull_json(pull, media=self._media())

    def get_pull(
        self, owner: str, repo: str, number: str, user: User | None, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        return 200, self.owner.pull_json(self._pull(found, number), media=self._media())

    def update_pull(
        self, owner: str, repo: str, number: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        pull = self._pull(found, number)
        if user is None:
            raise HTTPError(401, "Requires authentication")
        if user.login != pull.user.login and user.login not in found.collaborators:
            raise HTTPError(403, "Resource not accessible by personal access token")
        data = self._require(request)
        if "title" in data:
            pull.title = str(data["title"])
        if "body" in data:
            pull.body = data["body"]
        if data.get("state") in ("open", "closed"):
            pull.state = data["state"]
            pull.closed_at = _now() if pull.state == "closed" else None
        pull.updated_at = _now()
        return 200, self.owner.pull_json(pull, media=self._media())

    def check_merged(
        self, owner: str, repo: str, number: str, user: User | None, **_: Any
    ) -> tuple[int, Any]:
        merged = self._pull(self._repo(owner, repo, user), number).merged
        return (204 if merged else 404), None  # documented with no body either way

    def merge_pull(
        self, owner: str, repo: str, number: str, user: User | None, request: Any, **_: Any
    ) -> tuple[int, Any]:
        found = self._repo(owner, repo, user)
        self._writable(found, user)
        assert user is not None
        pull = self._pull(found, number)
        data = request if isinstance(request, dict) else {}
        standin = self.owner
        if pull.state != "open":
            raise HTTPError(405, "Pull Request is not mergeable")
        standin._sync_pull_head(pull)
        head = standin._pull_head(pull)
        if data.get("sha") and data["sha"] != head:
            raise HTTPError(409, "Head branch was modified. Review and try the merge again.")
        index = standin._mergeable(pull)
        if index is None or head is None:
            raise HTTPError(405, "Pull Request is not mergeable")
        git = found.git()
        before = standin.branch_sha(found, pull.base_ref)
        assert before is not None
        tree = index.write_tree(git)
        sig = pygit2.Signature(user.login, f"{user.id}+{user.login}@users.noreply.github.com")
        title = data.get("commit_title") or (
            f"Merge pull request #{pull.number} from {pull.head_repo.owner}/{pull.head_ref}"
        )
        message = f"{title}\n\n{data.get('commit_message') or pull.title}"
        oid = git.create_commit(
            f"refs/heads/{pull.base_ref}", sig, sig, message, tree, [before, head]
        )
        pull.state, pull.merged, pull.merged_at = "closed", True, _now()
        pull.closed_at, pull.merge_commit_sha, pull.merged_by = pull.merged_at, str(oid), user
        standin._push_event(found, f"refs/heads/{pull.base_ref}", before, str(oid), user)
        return 200, {"sha": str(oid), "merged": True, "message": "Pull Request successfully merged"}

    # --- git smart HTTP -----------------------------------------------------------------

    def _git_http(self, method: str, path: str, query: str) -> None:
        """Clone, fetch and push for real, through git's own CGI program."""
        standin = self.owner
        match = re.match(r"^/([^/]+)/([^/]+?)\.git(/.*)?$", path)
        repo = standin.repos.get(f"{match.group(1)}/{match.group(2)}") if match else None
        if repo is None or match is None:
            return self._send(404, {"message": "Not Found"})
        user = None
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                _, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                secret = ""
            user = standin.users.get(secret)
        pushing = "git-receive-pack" in path or "service=git-receive-pack" in query
        if (pushing or repo.private) and (user is None or user.login not in repo.collaborators):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(standin.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": method,
            "PATH_INFO": f"/{repo.owner}/{repo.name}.git{match.group(3) or ''}",
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_USER": user.login if user else "",
            "REMOTE_ADDR": "127.0.0.1",
        }
        body = self._body()
        if self.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        env["CONTENT_LENGTH"] = str(len(body))
        before = (
            {
                r.name: str(r.target)
                for r in repo.git().references.iterator()
                if r.name.startswith("refs/heads/")
            }
            if pushing
            else {}
        )
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=300
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if pushing and user is not None:
            with standin.lock:
                after = {
                    r.name: str(r.target)
                    for r in repo.git().references.iterator()
                    if r.name.startswith("refs/heads/")
                }
                for name, sha in after.items():
                    if before.get(name) != sha:
                        self._after_push(repo, name, user)
                        if before.get(name):
                            standin._push_event(repo, name, before[name], sha, user)
