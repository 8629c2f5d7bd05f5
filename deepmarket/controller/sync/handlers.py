"""kopf wiring of the catalog sync: one loop per CatalogSource, kicked by its watch events, by
the webhook (through its annotations), by the deletion of a DeepModule it owns, and by its
poll interval (with ±10 % jitter so that many sources do not poll in step).

Our own status writes come back as watch events; they do not kick a sync (only a new
generation or a changed request/approval annotation does), so an idle source costs its poll:
one GET of itself, one ref advertisement from the git server, one list of DeepModules.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf

from deepmarket import API_GROUP, API_VERSION
from deepmarket.controller.context import OperatorContext
from deepmarket.controller.kube import ApiError, Kube, object_path
from deepmarket.controller.sync.plan import (
    API,
    APPROVE_ANNOTATION,
    REQUESTED_AT_ANNOTATION,
    REQUESTED_REVISION_ANNOTATION,
)
from deepmarket.controller.sync.status import Result, next_status, status_changed
from deepmarket.controller.sync.syncer import Syncer, SyncSettings, parse_duration
from deepmarket.controller.sync.webhook import hook_path
from deepmarket.controller.workqueue import GONE, Key, WorkQueue
from deepmarket.controller.workqueue import Result as QueueResult

log = logging.getLogger("deepmarket.controller.sync")

KIND = "CatalogSource"
DEFAULT_INTERVAL_S = 60.0
MIN_INTERVAL_S = 1.0
JITTER = 0.1
RETRY_BASE_S = 2.0
WATCHED_ANNOTATIONS = (APPROVE_ANNOTATION, REQUESTED_AT_ANNOTATION, REQUESTED_REVISION_ANNOTATION)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trigger(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What, when it changes, asks for a sync (status writes change none of it)."""
    meta = body.get("metadata") or {}
    notes = meta.get("annotations") or {}
    return (meta.get("generation"), *(notes.get(a) for a in WATCHED_ANNOTATIONS))


class SyncController:
    """Watch events and webhooks add keys to the work queue; `reconcile` runs one sync."""

    def __init__(self, syncer: Syncer, kube: Kube) -> None:
        self.syncer = syncer
        self.kube = kube
        self.queue: WorkQueue | None = None  # set by `setup`
        self.seen: dict[Key, tuple[Any, ...]] = {}
        self.owners: dict[str, Key] = {}  # CatalogSource uid → key
        self.git_failures: dict[Key, int] = {}

    # -- triggers ---------------------------------------------------------------------------
    def _add(self, key: Key) -> None:
        if self.queue is not None:
            self.queue.add(key)

    def observe(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = Key(KIND, meta["namespace"], meta["name"])
        self.owners[meta["uid"]] = key
        now = trigger(body)
        if self.seen.get(key) == now:
            return
        self.seen[key] = now
        self._add(key)

    def kick(self, namespace: str, name: str) -> None:
        self._add(Key(KIND, namespace, name))

    def kick_owner(self, uid: str) -> None:
        key = self.owners.get(uid)
        if key is not None:
            self._add(key)

    def deleted(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = Key(KIND, meta["namespace"], meta["name"])
        if self.queue is not None:
            self.queue.drop(key)
        self.seen.pop(key, None)
        self.git_failures.pop(key, None)
        self.owners.pop(meta["uid"], None)
        self.syncer.forget(meta["uid"])

    def shutdown(self) -> None:
        self.syncer.shutdown()

    # -- one sync ---------------------------------------------------------------------------
    async def reconcile(self, key: Key) -> QueueResult:
        """One sync; requeued after the source's interval (± jitter), sooner after a git
        failure; an API failure raises, and the queue retries it with backoff."""
        _, ns, name = key
        try:
            source = await asyncio.to_thread(
                self.kube.request, "GET", object_path(API, "CatalogSource", ns, name)
            )
        except ApiError as err:
            if err.status == 404:
                self.git_failures.pop(key, None)
                return GONE
            raise
        spec = source.get("spec") or {}
        try:
            interval = parse_duration(spec.get("interval"), DEFAULT_INTERVAL_S)
        except ValueError:
            interval = DEFAULT_INTERVAL_S
        interval = max(interval, MIN_INTERVAL_S) * (1 + random.uniform(-JITTER, JITTER))
        if spec.get("suspend"):
            return QueueResult(requeue_after=interval)
        notes = source["metadata"].get("annotations") or {}
        current = dict(source.get("status") or {})
        requested = None  # a push not handled yet: wait until the server shows its commit
        if notes.get(REQUESTED_AT_ANNOTATION) != current.get("lastHandledRequestedAt"):
            requested = notes.get(REQUESTED_REVISION_ANNOTATION)

        def progress(result: Result) -> None:
            nonlocal current
            current = self._write_status(source, current, result)

        attempt = await asyncio.to_thread(self.syncer.sync, source, requested, progress)
        self.syncer.store.notify()
        result = attempt.result
        before = {c["type"]: c for c in current.get("conditions") or []}.get("Ready") or {}
        await asyncio.to_thread(self._write_status, source, current, result)
        events = list(attempt.events)
        newly = before.get("reason") != result.reason or (
            result.attempted and current.get("lastAttemptedRevision") != result.attempted
        )
        if result.reason not in ("Succeeded", "Conflict") and newly:
            events.append(("Warning", result.reason, result.message))
        for type_, reason, message in events:
            await asyncio.to_thread(self._event, source, type_, reason, message)
        if result.reason not in ("Succeeded", "Conflict"):
            log.warning("%s/%s: %s: %s", ns, name, result.reason, result.message)
        elif attempt.events:
            log.info("%s/%s: %s", ns, name, result.message)
        if result.reason in ("FetchFailed", "ApplyFailed"):
            n = self.git_failures.get(key, 0) + 1
            self.git_failures[key] = n
            return QueueResult(requeue_after=min(interval, RETRY_BASE_S * 2 ** min(n, 6)))
        self.git_failures.pop(key, None)
        return QueueResult(requeue_after=interval)

    def _write_status(
        self, source: Mapping[str, Any], current: dict[str, Any], result: Result
    ) -> dict[str, Any]:
        meta = source["metadata"]
        status = next_status(
            current,
            result,
            generation=int(meta.get("generation") or 0),
            now=now_iso(),
            webhook_path=hook_path(meta["namespace"], meta["name"]),
        )
        if not status_changed(current, status):
            return current
        body = {
            "apiVersion": API,
            "kind": "CatalogSource",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "status": status,
        }
        try:
            self.kube.apply(body, subresource="status")
        except ApiError as err:
            if err.status != 404:
                raise
        return status

    def _event(self, source: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            self.kube.event(dict(source), type_, reason, message)
        except ApiError as err:  # a courtesy; never fail a sync for one
            log.warning("could not record event on %s: %s", source["metadata"]["name"], err)


def register(registry: kopf.OperatorRegistry, ctl: SyncController) -> None:
    """Add the CatalogSource handlers to `registry`."""

    @kopf.on.event(API_GROUP, API_VERSION, "catalogsources", registry=registry,
                   id="catalogsource_event")  # fmt: skip
    async def catalogsource_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            ctl.deleted(dict(body))
            return
        ctl.observe(dict(body))

    @kopf.on.event(API_GROUP, API_VERSION, "deepmodules", registry=registry,
                   id="synced_deepmodule_event")  # fmt: skip
    async def synced_deepmodule_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        if type != "DELETED":
            return  # drift in a spec is put back by the next poll; a deletion right away
        for ref in body.get("metadata", {}).get("ownerReferences") or []:
            if ref.get("kind") == "CatalogSource" and ref.get("controller"):
                ctl.kick_owner(str(ref.get("uid")))


def setup(ctx: OperatorContext) -> SyncController:
    """The catalog sync's part of the operator (see `deepmarket.controller.context`)."""
    settings = SyncSettings(git_cache_dir(ctx.options.git_cache), ctx.options.git_max_bytes)
    ctl = SyncController(Syncer(ctx.kube, ctx.catalogs, settings), ctx.kube)
    ctl.queue = ctx.work_queue("catalogsource", ctl.reconcile)
    register(ctx.registry, ctl)
    ctx.on_shutdown(ctl.shutdown)
    return ctl


def git_cache_dir(given: Path | None) -> Path:
    """Where the CatalogSources' bare mirrors live: given, else $XDG_CACHE_HOME (or ~/.cache)
    /deepmarket/git; in a pod, an emptyDir (a restart fetches again: nothing is lost)."""
    if given is not None:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deepmarket" / "git"
