"""One sync of one CatalogSource: fetch, judge, apply (the imperative shell).

Order, so that nothing is lost on the way: fetch → the branch exists → the new tip descends
from the applied revision (else: a force-push, held) → the catalog at the tip is valid (else:
held, with the validator's located problems) → plan → the mass-deletion guard → publish the
catalog to the store → apply → prune → only then `lastAppliedRevision`. Every failure before
the apply leaves the DeepModules as they are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepmarket.catalog.model import Problem
from deepmarket.controller.catalogstore import CatalogStore, Synced
from deepmarket.controller.kube import ApiError, Kube, object_path
from deepmarket.controller.sync.git import Credentials, GitProblem, Mirror
from deepmarket.controller.sync.gitcatalog import GitCatalog, ModuleCache, read_catalog
from deepmarket.controller.sync.plan import (
    API,
    REQUESTED_AT_ANNOTATION,
    SyncPlan,
    approved,
    commit_of,
    plan_sync,
    revision_of,
)
from deepmarket.controller.sync.status import Result
from deepmarket.controller.sync.webhook import ZERO

log = logging.getLogger("deepmarket.controller.sync")

PROBLEMS_SHOWN = 5
REQUESTED_WAIT_S = 30.0  # how long a pushed revision may take to show on the server


@dataclass(frozen=True)
class SyncSettings:
    cache: Path
    max_bytes: int
    default_timeout: float = 60.0


def parse_duration(text: str | int | float | None, default: float) -> float:
    """Go-style durations as in Flux's spec ("1m30s", "45s", "2h"); plain numbers are seconds."""
    if text is None or text == "":
        return default
    if isinstance(text, int | float):
        return float(text)
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, num = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in units or not num:
            raise ValueError(f"not a duration: {text!r} (write e.g. 30s, 5m, 1h)")
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    if num:
        raise ValueError(f"not a duration: {text!r} (a unit is missing: s, m or h)")
    return total


def problems_text(problems: list[Problem], limit: int = PROBLEMS_SHOWN) -> str:
    shown = "; ".join(str(p) for p in problems[:limit])
    more = len(problems) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


@dataclass
class Attempt:
    """What the shell needs after a sync besides the status: events to record."""

    result: Result
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


class Syncer:
    """Holds the mirrors and the last read catalog of every source between syncs."""

    def __init__(
        self,
        kube: Kube,
        store: CatalogStore,
        settings: SyncSettings,
        *,
        io_workers: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.kube = kube
        self.store = store
        self.settings = settings
        self.mirrors: dict[str, Mirror] = {}
        self.read: dict[str, GitCatalog] = {}  # uid → the catalog last read (any validity)
        self.module_cache: dict[str, ModuleCache] = {}  # uid → checked module directories
        self.io = ThreadPoolExecutor(io_workers, thread_name_prefix="sync-io")
        self.sleep = sleep

    # -- helpers ------------------------------------------------------------------------------
    def _credentials(self, source: Mapping[str, Any]) -> Credentials | None:
        ref = (source.get("spec") or {}).get("secretRef")
        if not ref:
            return None
        ns = source["metadata"]["namespace"]
        secret = self.kube.get("v1", "Secret", ns, ref["name"])
        if secret is None:
            raise GitProblem(
                "FetchFailed", f"spec.secretRef: Secret {ns}/{ref['name']} does not exist"
            )
        import base64

        data = secret.get("data") or {}
        if "password" not in data and "username" not in data:
            raise GitProblem(
                "FetchFailed",
                f"spec.secretRef: Secret {ns}/{ref['name']} has neither 'username' nor "
                "'password' (for GitHub: username x-access-token, password a token)",
            )

        def text(key: str) -> str:
            return base64.b64decode(data.get(key) or "").decode("utf-8", "replace")

        return Credentials(text("username") or "git", text("password"))

    def mirror(self, source: Mapping[str, Any]) -> Mirror:
        meta, spec = source["metadata"], source.get("spec") or {}
        uid = meta["uid"]
        url, branch = spec["url"], spec.get("branch", "main")
        timeout = parse_duration(spec.get("timeout"), self.settings.default_timeout)
        creds = self._credentials(source)
        mirror = self.mirrors.get(uid)
        if mirror is None or mirror.url != url or mirror.branch != branch:
            mirror = Mirror(self.settings.cache, uid, url, branch, credentials=creds,
                            timeout=timeout, max_bytes=self.settings.max_bytes)  # fmt: skip
            self.mirrors[uid] = mirror
        mirror.credentials, mirror.timeout = creds, timeout
        return mirror

    def forget(self, uid: str) -> None:
        mirror = self.mirrors.pop(uid, None)
        self.read.pop(uid, None)
        self.module_cache.pop(uid, None)
        self.store.remove(uid)
        if mirror is not None:
            import shutil

            shutil.rmtree(mirror.path, ignore_errors=True)

    def catalog_at(self, uid: str, mirror: Mirror, commit: str, path: str) -> GitCatalog:
        cached = self.read.get(uid)
        if (
            cached is not None
            and cached.commit == commit
            and cached.catalog.root == Path(path.strip("/") or ".")
        ):
            return cached
        read = read_catalog(mirror.repo, commit, path, self.module_cache.setdefault(uid, {}))
        self.read[uid] = read
        return read

    def _publish(self, source: Mapping[str, Any], revision: str, read: GitCatalog) -> None:
        meta = source["metadata"]
        self.store.put(Synced(meta["namespace"], meta["name"], meta["uid"], revision, read.catalog))

    def _restore(self, source: Mapping[str, Any], mirror: Mirror) -> None:
        """After a restart the store is empty: give it the last applied revision's catalog
        (when the mirror has it), so DeepModules resolve while the tip is broken."""
        meta = source["metadata"]
        if self.store.get(meta["uid"]) is not None:
            return
        applied = (source.get("status") or {}).get("lastAppliedRevision")
        commit = commit_of(applied)
        if not commit or not mirror.has(commit):
            return
        path = (source.get("spec") or {}).get("path", ".")
        read = read_catalog(mirror.repo, commit, path)
        if read.valid:
            self._publish(source, applied, read)

    # -- the sync -------------------------------------------------------------------------------
    def sync(
        self,
        source: Mapping[str, Any],
        requested: str | None = None,
        progress: Callable[[Result], None] | None = None,
    ) -> Attempt:
        meta, spec = source["metadata"], source.get("spec") or {}
        status = source.get("status") or {}
        branch = spec.get("branch", "main")
        applied = status.get("lastAppliedRevision")
        keep = f"keeping {applied} applied" if applied else "nothing was applied yet"
        requested_at = (meta.get("annotations") or {}).get(REQUESTED_AT_ANNOTATION)

        def result(reason: str, message: str, **kw: Any) -> Attempt:
            return Attempt(Result(reason, message, requested_at=requested_at, **kw))

        try:
            mirror = self.mirror(source)
            tip = mirror.fetch()
            if requested and requested != ZERO:
                tip = self._wait_for(mirror, tip, requested)
        except GitProblem as problem:
            return result(problem.reason, f"{problem.message}; {keep}")
        if tip is None:
            msg = f"branch {branch!r} does not exist at {spec['url']}; {keep}"
            return result("BranchNotFound", msg)
        self._restore(source, mirror)
        revision = revision_of(branch, tip)
        applied_commit = commit_of(applied)
        rewritten = applied_commit and not mirror.descends(tip, applied_commit)
        if rewritten and not approved(source, tip):
            msg = (
                f"branch {branch!r} was rewritten (force-push?): {revision} does not "
                f"descend from the applied {applied}; {keep}. If the new history is "
                f"intended, approve it with `deepmarket sync {meta['name']} -n "
                f"{meta['namespace']} --approve`"
            )
            return result("HistoryRewritten", msg, attempted=revision, held=tip)
        path = spec.get("path", ".")
        read = self.catalog_at(meta["uid"], mirror, tip, path)
        if not read.valid:
            n = len(read.errors)
            msg = (
                f"revision {revision} is invalid ({n} problem{'s' if n != 1 else ''}); {keep}: "
                + problems_text(read.errors)
            )
            return result("InvalidCatalog", msg, attempted=revision)
        observed = self._deepmodules(meta["namespace"])
        plan = plan_sync(read.catalog, source, revision, observed)
        if plan.held:
            msg = f"{plan.held}; {keep}"
            return result("PruneHeld", msg, attempted=revision, held=tip)
        self._publish(source, revision, read)
        if plan.writes and progress is not None:
            progress(Result("Progressing", f"applying {revision}: {_counts(plan)}",
                            attempted=revision))  # fmt: skip
        done, errors = self._execute(plan)
        inventory = tuple(sorted(plan.inventory))
        if errors:
            msg = f"applying {revision}: " + "; ".join(errors[:PROBLEMS_SHOWN])
            return result("ApplyFailed", msg, attempted=revision, inventory=inventory)
        summary = f"applied {revision}: {len(inventory)} DeepModules"
        if done:
            summary += f" ({', '.join(done[:10])}{', …' if len(done) > 10 else ''})"
        reason = "Succeeded"
        if plan.conflicts:
            reason = "Conflict"
            summary += (
                f"; not deployed, because a DeepModule of that name exists and is not owned by "
                f"this CatalogSource: {', '.join(plan.conflicts)} (delete it, or rename)"
            )
        attempt = result(reason, summary, attempted=revision, applied=revision,
                         inventory=inventory)  # fmt: skip
        if done:
            attempt.events.append(("Normal", "Applied", summary))
        return attempt

    def _wait_for(self, mirror: Mirror, tip: str | None, requested: str) -> str | None:
        """Fetch again until the server shows `requested` (a webhook can outrun the git
        server's replicas); a tip that already contains it is newer and is synced instead."""
        deadline = time.monotonic() + REQUESTED_WAIT_S
        delay = 0.25
        while tip is not None and not mirror.descends(tip, requested):
            if time.monotonic() > deadline:
                log.warning(
                    "pushed revision %s not on %s after %.0fs; syncing its tip %s",
                    requested, mirror.url, REQUESTED_WAIT_S, tip,
                )  # fmt: skip
                break
            self.sleep(delay)
            delay = min(delay * 2, 4.0)
            tip = mirror.fetch()
        return tip

    def _deepmodules(self, namespace: str) -> list[dict[str, Any]]:
        path = object_path(API, "DeepModule", namespace)
        return list(self.kube.request("GET", path).get("items") or [])

    def _execute(self, plan: SyncPlan) -> tuple[list[str], list[str]]:
        """Apply and prune concurrently; (what was done, what the apiserver refused)."""
        jobs = [(f"applied {o['metadata']['name']}", self.io.submit(self.kube.apply, o))
                for o in plan.applies]  # fmt: skip
        for prune in plan.prunes:
            if prune.verb == "delete":
                ns = plan.namespace
                job = self.io.submit(self.kube.delete, API, "DeepModule", ns, prune.name, prune.uid)
                jobs.append((f"deleted {prune.name}", job))
            else:
                job = self.io.submit(self._orphan, plan.namespace, prune)
                jobs.append((f"orphaned {prune.name}", job))
        done, errors = [], []
        transient: ApiError | None = None
        for what, job in jobs:
            try:
                job.result()
                done.append(what)
            except ApiError as err:
                if err.transient:
                    transient = err
                else:
                    errors.append(f"{what.split()[1]}: {err.message}")
        if transient is not None:
            raise transient
        return done, errors

    def _orphan(self, namespace: str, prune: Any) -> None:
        """Stop owning a DeepModule without touching what runs (prune policy Orphan)."""
        path = object_path(API, "DeepModule", namespace, prune.name)
        ref = f"/metadata/ownerReferences/{prune.owner_index}"
        patch = [
            {"op": "test", "path": "/metadata/uid", "value": prune.uid},
            {"op": "remove", "path": ref},
        ]
        self.kube.request("PATCH", path, body=patch, content_type="application/json-patch+json")

    def shutdown(self) -> None:
        self.io.shutdown(wait=False, cancel_futures=True)


def _counts(plan: SyncPlan) -> str:
    parts = [f"{len(plan.applies)} to apply"]
    if plan.prunes:
        parts.append(f"{len(plan.prunes)} to prune")
    return ", ".join(parts)
