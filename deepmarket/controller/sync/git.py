"""The git shell of the sync: one bare mirror per CatalogSource, fetched with bounds (pygit2).

No working tree is ever checked out: the catalog is read from the objects (`gitcatalog`).
A poll first asks the server for the branch's tip (one ref advertisement); only a tip the
mirror does not have yet is fetched, and a fetch stops past a size cap or a deadline.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pygit2

from deepmarket.catalog.yamlsource import human_size

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class GitProblem(Exception):
    """A fetch that failed; `reason` is a condition reason (FetchFailed, BranchNotFound)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = ""

    def __repr__(self) -> str:  # never print the password, even in a traceback
        return f"Credentials(username={self.username!r}, password=***)"


def set_timeouts(seconds: float) -> None:
    """libgit2's connect and read timeouts (process-wide): a server that stops answering ends
    a fetch instead of hanging a worker forever."""
    ms = int(seconds * 1000)
    pygit2.settings.server_connect_timeout = ms
    pygit2.settings.server_timeout = ms


class _Callbacks(pygit2.RemoteCallbacks):
    def __init__(self, creds: Credentials | None, deadline: float, max_bytes: int) -> None:
        super().__init__()
        self.creds = creds
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.asked = 0
        self.stopped: GitProblem | None = None

    def credentials(self, url: str, username_from_url: str | None, allowed_types: int):
        self.asked += 1
        if self.creds is None or self.asked > 1:
            self.stopped = GitProblem(
                "FetchFailed",
                "the server refused the credentials"
                if self.creds
                else "the server asks for credentials; set spec.secretRef",
            )
            raise self.stopped
        return pygit2.UserPass(self.creds.username, self.creds.password)

    def _check(self) -> None:
        if time.monotonic() > self.deadline:
            self.stopped = GitProblem("FetchFailed", "the fetch took longer than spec.timeout")
            raise self.stopped

    def sideband_progress(self, string: str) -> None:
        self._check()

    def transfer_progress(self, stats: pygit2.remotes.TransferProgress) -> None:
        self._check()
        if stats.received_bytes > self.max_bytes:
            self.stopped = GitProblem(
                "FetchFailed",
                f"the fetch exceeded {human_size(self.max_bytes)} (the operator's "
                "--git-max-bytes); is this the catalog repository?",
            )
            raise self.stopped


class Mirror:
    """A bare repository under `cache/<key>.git` that follows one branch of one URL."""

    def __init__(
        self,
        cache: Path,
        key: str,
        url: str,
        branch: str,
        *,
        credentials: Credentials | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.path = Path(cache) / f"{key}.git"
        self.url, self.branch = url, branch
        self.credentials = credentials
        self.timeout, self.max_bytes = timeout, max_bytes
        self.ref = f"refs/heads/{branch}"
        self.local_ref = f"refs/remotes/origin/{branch}"
        self.repo = self._open()

    def _open(self) -> pygit2.Repository:
        try:
            repo = pygit2.Repository(str(self.path))
        except pygit2.GitError:
            if self.path.exists():  # a half-written mirror (killed mid-init): start again
                shutil.rmtree(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(self.path), bare=True)
        if "origin" in [r.name for r in repo.remotes]:
            if repo.remotes["origin"].url != self.url:
                repo.remotes.set_url("origin", self.url)
        else:
            repo.remotes.create("origin", self.url, f"+{self.ref}:{self.local_ref}")
        return repo

    def _callbacks(self) -> _Callbacks:
        return _Callbacks(self.credentials, time.monotonic() + self.timeout, self.max_bytes)

    def _fail(self, err: Exception, callbacks: _Callbacks, doing: str) -> GitProblem:
        if callbacks.stopped is not None:
            return callbacks.stopped
        text = str(err).strip() or type(err).__name__
        return GitProblem("FetchFailed", f"{doing} {self.url} failed: {text}")

    def remote_tip(self) -> str | None:
        """The branch's commit on the server (None: the server has no such branch)."""
        callbacks = self._callbacks()
        try:
            heads = self.repo.remotes["origin"].list_heads(callbacks=callbacks)
        except (pygit2.GitError, OSError, ValueError) as err:
            raise self._fail(err, callbacks, "listing the branches of") from None
        for head in heads:
            if head.name == self.ref:
                return str(head.oid)
        return None

    def local_tip(self) -> str | None:
        try:
            return str(self.repo.references[self.local_ref].target)
        except KeyError:
            return None

    def fetch(self) -> str | None:
        """Bring the branch in if it moved; its tip afterwards (None: no such branch)."""
        tip = self.remote_tip()
        if tip is None or self.has(tip):
            if tip is not None and self.local_tip() != tip:
                self.repo.references.create(self.local_ref, tip, force=True)
            return tip
        callbacks = self._callbacks()
        try:
            self.repo.remotes["origin"].fetch(
                [f"+{self.ref}:{self.local_ref}"], callbacks=callbacks
            )
        except (pygit2.GitError, OSError, ValueError) as err:
            raise self._fail(err, callbacks, "fetching") from None
        fetched = self.local_tip()
        return fetched

    def has(self, commit: str) -> bool:
        try:
            return isinstance(self.repo.get(commit), pygit2.Commit)
        except (ValueError, TypeError):
            return False

    def descends(self, newer: str, older: str) -> bool:
        """Whether `newer` contains `older` in its history (a fast-forward from it)."""
        if newer == older:
            return True
        if not (self.has(newer) and self.has(older)):
            return False
        return self.repo.descendant_of(newer, older)
