"""The thin github3.py shell of `deepmarket submit`: read upstream, fork when needed, write
the branch's one commit through the Git Data API, open or update the pull request.

Every GitHub call goes through `_call`, which turns github3.py's exceptions into one line
(`deepmarket.contrib.errors`). The token is handed to github3.py and nowhere else.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from deepmarket.contrib import plan
from deepmarket.contrib.errors import describe
from deepmarket.errors import UserError

T = TypeVar("T")
Progress = Callable[[str], None]


class GitHubError(UserError):
    """A GitHub request failed; the message is one line that says what to do."""


@dataclass(frozen=True)
class LocalModule:
    """What the author submits: the module folder's files and how it is listed."""

    id: str
    data: dict[str, Any]
    deploy: bool
    files: dict[str, bytes]  # relative to catalog/<id>/, '/'-separated
    checked: str  # the validation result, one line, for the pull request's body


@dataclass
class Outcome:
    number: int
    url: str
    branch: str
    head_repo: str
    pull_request: str  # "opened", "updated" or "unchanged"
    commit: str | None  # the new commit, None when the branch already held this content
    forked: bool = False
    notes: list[str] = field(default_factory=list)


def login(upstream: plan.Upstream, token: str) -> Any:
    import github3

    if upstream.enterprise:
        return github3.GitHubEnterprise(upstream.web_url, token=token)
    return github3.GitHub(token=token)


class Submitter:
    """One `submit` run against one upstream repository."""

    def __init__(
        self,
        gh: Any,
        upstream: plan.Upstream,
        *,
        progress: Progress,
        fork_timeout: float = 300.0,
        poll: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gh = gh
        self.upstream = upstream
        self.say = progress
        self.fork_timeout = fork_timeout
        self.poll = poll
        self.clock = clock
        self._repo: Any = None

    # --- error handling ----------------------------------------------------------------

    @contextmanager
    def _doing(self, what: str) -> Iterator[None]:
        import github3.exceptions as gx
        import requests

        try:
            yield
        except gx.IncompleteResponse as exc:
            raise GitHubError(
                f"GitHub's answer while {what} lacks fields github3.py needs ({exc.exception}); "
                "is --github-url a GitHub (Enterprise) server?"
            ) from None
        except gx.GitHubError as exc:
            headers = {k.lower(): v for k, v in exc.response.headers.items()}
            raise GitHubError(
                describe(exc.code, exc.msg, exc.errors, headers, doing=what, now=self.clock())
            ) from None
        except requests.RequestException as exc:
            raise GitHubError(
                f"cannot reach GitHub at {self.upstream.web_url} while {what} "
                f"({type(exc).__name__}); check the network or --github-url"
            ) from None

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._doing(what):
            return fn(*args, **kwargs)

    def _maybe(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Like _call, but a 404 means "not there" (None) instead of an error."""
        import github3.exceptions as gx

        with self._doing(what):
            try:
                return fn(*args, **kwargs)
            except gx.NotFoundError:
                return None

    # --- reading -----------------------------------------------------------------------

    @property
    def repo(self) -> Any:
        if self._repo is None:
            name = self.upstream.full_name
            self._repo = self._call(
                f"reading {name}", self.gh.repository, self.upstream.owner, self.upstream.name
            )
        return self._repo

    def can_push(self) -> bool:
        return bool((self.repo.as_dict().get("permissions") or {}).get("push"))

    def base_commit(self, branch: str) -> tuple[str, str]:
        """(commit sha, tree sha) of upstream's `branch`."""
        where = f"{self.upstream.full_name}@{branch}"
        ref = self._maybe(f"reading branch {where}", self.repo.ref, f"heads/{branch}")
        if ref is None:
            raise GitHubError(
                f"{self.upstream.full_name} has no branch {branch!r}; pass an existing one "
                "with --base"
            )
        sha = ref.object.sha
        commit = self._call(f"reading commit {sha[:12]} of {where}", self.repo.git_commit, sha)
        return sha, commit.tree.sha

    def upstream_module(self, module_id: str, sha: str) -> tuple[str | None, list[str]]:
        """(tree sha, file paths) of catalog/<id>/ upstream at `sha`; (None, []) if absent."""
        listing = self._maybe(
            "listing catalog/ upstream",
            self.repo.directory_contents,
            "catalog",
            ref=sha,
            return_as=dict,
        )
        entry = (listing or {}).get(module_id)
        if entry is None or entry.type != "dir":
            return None, []
        tree = self._call(
            f"reading catalog/{module_id}/ upstream", self.repo.tree, entry.sha, recursive=True
        )
        return entry.sha, sorted(h.path for h in tree.tree if h.type == "blob")

    def upstream_index(self, sha: str) -> str:
        found = self._maybe(
            "reading modules.yml upstream", self.repo.file_contents, "modules.yml", ref=sha
        )
        return found.decoded.decode("utf-8") if found is not None else ""

    # --- forking -----------------------------------------------------------------------

    def head_repo(self) -> tuple[Any, bool]:
        """Where the branch goes: upstream itself when the token may push there, else the
        user's fork (created, and waited for, when missing)."""
        if self.can_push():
            return self.repo, False
        self.say(f"you cannot push to {self.upstream.full_name}: using your fork")
        fork = self._call(f"forking {self.upstream.full_name}", self.repo.create_fork)
        owner, name = fork.owner.login, fork.name
        # GitHub forks asynchronously: the API answers 202 at once, and the fork's git data
        # appears later ("you may have to wait a short period", GitHub's docs).
        deadline = self.clock() + self.fork_timeout
        last_said = self.clock()
        while True:
            repo = self._maybe(
                f"waiting for the fork {owner}/{name}", self.gh.repository, owner, name
            )
            branch = getattr(repo, "default_branch", None)
            if repo is not None and branch:
                ready = self._call(
                    f"waiting for the fork {owner}/{name}", self._maybe_ready, repo, branch
                )
                if ready:
                    return repo, True
            now = self.clock()
            if now >= deadline:
                raise GitHubError(
                    f"the fork {owner}/{name} is not ready after {self.fork_timeout:.0f}s; "
                    "GitHub forks asynchronously: run submit again in a few minutes"
                )
            if now - last_said >= 10:
                self.say(f"waiting for GitHub to finish the fork {owner}/{name} …")
                last_said = now
            time.sleep(self.poll)

    def _maybe_ready(self, repo: Any, branch: str) -> bool:
        import github3.exceptions as gx

        try:
            return repo.ref(f"heads/{branch}") is not None
        except gx.GitHubError as exc:
            if exc.code in (404, 409):
                return False  # 404, or 409 "Git Repository is empty", while GitHub copies
            raise

    # --- writing -----------------------------------------------------------------------

    def submit(self, module: LocalModule, base: str | None = None) -> Outcome | None:
        """Create or update the branch and the pull request; None when upstream already
        has exactly this module."""
        base = base or self.repo.default_branch
        base_sha, base_tree = self.base_commit(base)
        upstream_dir, upstream_files = self.upstream_module(module.id, base_sha)
        index_text = self.upstream_index(base_sha)
        from deepmarket.catalog.scaffold import index_ids

        listed = module.id in index_ids(index_text) if index_text.strip() else False
        new_index = plan.index_with_entry(index_text, module.id, module.deploy)
        if upstream_dir == plan.git_tree_sha(module.files) and new_index == index_text:
            return None
        branch = plan.branch_name(module.id, listed or upstream_dir is not None)
        listed = listed or upstream_dir is not None
        title = str(module.data.get("title", module.id))
        head, forked = self.head_repo()
        head_owner = head.owner.login
        where = f"{head_owner}/{head.name}"

        self.say(f"uploading {len(module.files) + 1} files to {where}")
        blobs = {
            rel: self._call(
                f"uploading catalog/{module.id}/{rel} to {where}",
                head.create_blob,
                base64.b64encode(data).decode("ascii"),
                "base64",
            )
            for rel, data in sorted(module.files.items())
        }
        index_blob = self._call(
            f"uploading modules.yml to {where}",
            head.create_blob,
            base64.b64encode(new_index.encode("utf-8")).decode("ascii"),
            "base64",
        )
        entries = plan.tree_changes(module.id, blobs, upstream_files, index_blob)
        tree = self._call(
            f"creating the commit's tree in {where}", head.create_tree, entries, base_tree
        )
        existing = self._maybe(f"reading branch {branch} of {where}", head.ref, f"heads/{branch}")
        commit_sha: str | None = None
        if existing is not None and self._tree_of(head, existing.object.sha) == tree.sha:
            self.say(f"branch {branch} of {where} already holds this content")
        else:
            commit = self._call(
                f"creating the commit in {where}",
                head.create_commit,
                plan.commit_message(module.id, title, listed),
                tree.sha,
                [base_sha],
            )
            commit_sha = commit.sha
            self._point_branch(head, where, branch, commit_sha, existing)

        head_label = f"{head_owner}:{branch}"
        title_text = plan.pr_title(module.id, title, listed)
        body = plan.pr_body(
            module.data,
            deploy=module.deploy,
            listed_upstream=listed,
            checked=module.checked,
            files=[e["path"] + (" (deleted)" if e["sha"] is None else "") for e in entries],
        )
        pr, state = self._open_or_update(head_label, base, title_text, body, forked)
        return Outcome(
            number=int(pr.number),
            url=str(pr.html_url),
            branch=branch,
            head_repo=where,
            pull_request=state if commit_sha or state == "opened" else "unchanged",
            commit=commit_sha,
            forked=forked,
        )

    def _tree_of(self, repo: Any, sha: str) -> str | None:
        commit = self._maybe(f"reading commit {sha[:12]}", repo.git_commit, sha)
        return commit.tree.sha if commit is not None else None

    def _point_branch(
        self, head: Any, where: str, branch: str, sha: str, existing: Any | None
    ) -> None:
        import github3.exceptions as gx

        if existing is None:
            try:
                with self._doing(f"creating branch {branch} in {where}"):
                    try:
                        head.create_ref(f"refs/heads/{branch}", sha)
                        self.say(f"created branch {branch} in {where}")
                        return
                    except gx.UnprocessableEntity as exc:
                        if "already exists" not in str(exc.msg):
                            raise
                # Created meanwhile (a second run in parallel): update it instead.
                existing = self._call(
                    f"reading branch {branch} of {where}", head.ref, f"heads/{branch}"
                )
            except GitHubError:
                raise
        # The branch is submit's own: it always holds one commit on upstream's base, so a
        # re-run replaces it (force) rather than piling fix-up commits on the author.
        self._call(f"updating branch {branch} in {where}", existing.update, sha, force=True)
        self.say(f"updated branch {branch} in {where}")

    def _open_or_update(
        self, head_label: str, base: str, title: str, body: str, forked: bool
    ) -> tuple[Any, str]:
        import github3.exceptions as gx

        up = self.upstream.full_name
        for attempt in range(2):
            found = self._call(
                f"looking for an open pull request from {head_label} in {up}",
                lambda: list(self.repo.pull_requests(state="open", head=head_label, base=base)),
            )
            if found:
                pr = found[0]
                self._call(f"updating pull request #{pr.number} in {up}", pr.update, title, body)
                return pr, "updated"
            if attempt:
                break
            try:
                with self._doing(f"opening the pull request in {up}"):
                    try:
                        pr = self.repo.create_pull(
                            title,
                            base,
                            head_label,
                            body,
                            maintainer_can_modify=True if forked else None,
                        )
                        return pr, "opened"
                    except gx.UnprocessableEntity as exc:
                        if "already exists" not in str(exc.msg) + str(exc.errors):
                            raise
            except GitHubError:
                raise
        raise GitHubError(
            f"GitHub says a pull request from {head_label} exists in {up}, but lists none "
            "open; open it by hand or close the old one"
        )
