"""What the runner hands each resource's controller (DeepModule, TrainingRun, sync) at start.

A resource package exposes `setup(ctx: OperatorContext) -> None`; it registers its kopf
indexes and handlers on `ctx.registry`, makes its work queue with `ctx.work_queue`, and may add
background loops. The runner starts all of it when this replica acts (standalone, or once it
holds the leader lease) and stops it before the lease can expire. Resource packages never
import each other; what they share lives here and in the other modules of this package.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import kopf

from deepmarket.catalog.model import Catalog
from deepmarket.controller.catalogstore import CatalogStore
from deepmarket.controller.kube import Kube
from deepmarket.controller.leaderhttp import Handler, Route
from deepmarket.controller.options import Options
from deepmarket.controller.workqueue import QueueSettings, Reconcile, WorkQueue

Background = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class OperatorContext:
    registry: kopf.OperatorRegistry
    kube: Kube  # writes through it stop when this replica may no longer act
    options: Options
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    queue_settings: QueueSettings = field(default_factory=QueueSettings)
    catalog: Catalog | None = None
    # The catalogs synced from git (CatalogSources): written by the sync, read by DeepModules.
    catalogs: CatalogStore = field(default_factory=CatalogStore)
    knative: bool = False  # whether serving.knative.dev/v1 is served now (re-checked)
    queues: list[WorkQueue] = field(default_factory=list)
    background: list[Background] = field(default_factory=list)
    shutdowns: list[Callable[[], None]] = field(default_factory=list)
    catalog_listeners: list[Callable[[Catalog | None], None]] = field(default_factory=list)
    api_listeners: list[Callable[[str, bool], None]] = field(default_factory=list)
    leader_routes: list[Route] = field(default_factory=list)

    def work_queue(self, name: str, reconcile: Reconcile) -> WorkQueue:
        """A work queue with the operator's settings, started and stopped with the operator."""
        queue = WorkQueue(reconcile, self.queue_settings, name=name)
        self.queues.append(queue)
        return queue

    def run_in_background(self, loop: Background) -> None:
        """A coroutine to run (and cancel) alongside the handlers, e.g. a poll."""
        self.background.append(loop)

    def add_leader_route(self, method: str, path: str, handler: Handler) -> None:
        """An HTTP route on --progress-listen that the acting replica answers; every replica
        serves it and a follower forwards to the leader (leaderhttp.py)."""
        self.leader_routes.append(Route(method, path, handler))

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        self.shutdowns.append(callback)

    def on_catalog_change(self, callback: Callable[[Catalog | None], None]) -> None:
        self.catalog_listeners.append(callback)

    def on_api_change(self, callback: Callable[[str, bool], None]) -> None:
        """`callback(group_version, served)` when an optional API (Knative) comes or goes."""
        self.api_listeners.append(callback)

    def set_catalog(self, catalog: Catalog | None) -> None:
        self.catalog = catalog
        for callback in self.catalog_listeners:
            callback(catalog)

    def set_api(self, group_version: str, served: bool) -> None:
        if group_version == "serving.knative.dev/v1":
            self.knative = served
        for callback in self.api_listeners:
            callback(group_version, served)


ResourceSetup = Callable[[OperatorContext], None]
