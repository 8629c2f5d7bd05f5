"""`deepmarket controller run`: kopf hardened for production, plus optional leader election.

More than one replica: with `--leader-elect` every replica competes for a coordination.k8s.io
Lease; only the holder runs the handlers, the others wait warm. A leader that cannot renew
within the lease duration stops its operator and exits non-zero, so Kubernetes restarts it as a
follower — never two writers at once for longer than one lease. Without it (the default, and
what `deepmarket dev` uses) the operator runs standalone: no peering objects, no writes at all
while nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kopf

from deepmarket.catalog.model import Catalog
from deepmarket.controller import DEEPMODULE_API
from deepmarket.controller.deepmodule.handlers import Controller, register
from deepmarket.controller.deepmodule.reconciler import Reconciler
from deepmarket.controller.kube import ApiError, Kube, connection_info, make_api_client
from deepmarket.controller.options import Options
from deepmarket.errors import UserError

log = logging.getLogger("deepmarket.controller")

LEASE_NAME = "deepmarket-operator"
LEASE_DURATION_S = 30
CATALOG_POLL_S = 15.0


@dataclass(frozen=True)
class RunConfig:
    options: Options
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    kubeconfig: str | None = None
    liveness: str | None = None  # e.g. http://0.0.0.0:8080/healthz
    leader_elect: bool = False
    lease_namespace: str = "deepmarket-system"
    lease_duration: int = LEASE_DURATION_S
    workers: int = 16
    api_timeout: float = 120.0  # how long to wait for the DeepModule API to be served


def deepmodule_list_paths(namespaces: tuple[str, ...]) -> list[str]:
    """The cheapest list calls that prove kopf will be able to watch what it must."""
    base = f"/apis/{DEEPMODULE_API}"
    if not namespaces:
        return [f"{base}/deepmodules"]
    return [f"{base}/namespaces/{ns}/deepmodules" for ns in namespaces]


def wait_for_deepmodule_api(
    kube: Kube,
    namespaces: tuple[str, ...],
    timeout: float,
    say: Callable[[str], None] = log.info,
    every: float = 10.0,
) -> None:
    """Block until listing DeepModules succeeds, so kopf starts with the resource served.

    kopf discovers resources once at start and re-discovers only on CRD watch events; a CRD
    that appears while it starts, or one whose storage still answers 429 "storage is
    (re)initializing", can leave it watching nothing for minutes. Waiting here costs one list
    call on a healthy cluster.
    """
    paths = deepmodule_list_paths(namespaces)
    start = time.monotonic()
    last_say = -every  # say so on the first failure
    while True:
        try:
            for path in paths:
                kube.request("GET", path, query=[("limit", "1")])
            waited = time.monotonic() - start
            if waited > 1:
                say(f"DeepModule API {DEEPMODULE_API} is served after {waited:.0f}s")
            return
        except ApiError as err:
            problem = str(err)
        now = time.monotonic()
        if now - start >= timeout:
            raise UserError(
                f"the DeepModule API {DEEPMODULE_API} is not served after {timeout:.0f}s "
                f"(last answer: {problem}); install the CRDs with `kubectl apply -k controller/`"
            )
        if now - last_say >= every:
            say(f"waiting for the DeepModule API {DEEPMODULE_API} ({problem}) …")
            last_say = now
        time.sleep(min(1.0, max(0.0, timeout - (now - start))))


def hardened_settings(settings: kopf.OperatorSettings, workers: int) -> None:
    """kopf's defaults tuned for a long-running operator (see ANCHORS: watch freezes, retries)."""
    # Watches end server-side every 10 minutes and are re-listed: a periodic full resync that
    # costs reads only. A silent stream is restarted after 5 minutes (the freeze kopf suffered).
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.watching.connect_timeout = 10
    settings.watching.inactivity_timeout = 300
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.networking.error_backoffs = [1, 2, 4, 8, 16, 30]  # bounded API retries inside kopf
    # We record our own Events; kopf must not turn log lines into Event writes.
    settings.posting.enabled = False
    settings.execution.max_workers = workers
    # No limit on per-object workers: kopf holds every worker at the index barrier until all
    # objects are indexed, so a limit below the object count deadlocks a restart (found by
    # bench/operator.py at 1,000 DeepModules with a limit of 200).
    settings.queueing.worker_limit = None
    settings.scanning.disabled = False
    # SIGTERM must end the process promptly even when the apiserver is gone (default 10 min).
    settings.process.ultimate_exiting_timeout = 15


def load_catalog_or_none(root: Path | None) -> Catalog | None:
    if root is None:
        return None
    from deepmarket.catalog import load_catalog  # the catalog helper's loader

    return load_catalog(root)


def _catalog_stamp(root: Path) -> float:
    files = [root / "modules.yml", *root.glob("catalog/*/module.yml")]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


async def watch_catalog(ctl: Controller, root: Path) -> None:
    """Reload the catalog when its files change; a broken catalog keeps the last good one."""
    stamp = _catalog_stamp(root)
    while True:
        await asyncio.sleep(CATALOG_POLL_S)
        now = _catalog_stamp(root)
        if now == stamp:
            continue
        stamp = now
        try:
            catalog = await asyncio.to_thread(load_catalog_or_none, root)
        except UserError as err:
            log.error("catalog %s is invalid, keeping the last good one: %s", root, err)
            continue
        ctl.reconciler.catalog = catalog
        log.info("catalog reloaded: %d modules", len(catalog or ()))
        await asyncio.gather(*(ctl.kick(key) for key in ctl.module_keys()))


class Lease:
    """A coordination.k8s.io/v1 Lease held by this process (optimistic concurrency on rv)."""

    def __init__(
        self, kube: Kube, namespace: str, identity: str, duration: int = LEASE_DURATION_S
    ) -> None:
        self.kube, self.namespace, self.identity = kube, namespace, identity
        self.duration = duration
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE_NAME}"

    @staticmethod
    def _now() -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def try_acquire(self) -> bool:
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": self._now(),
        }
        try:
            lease = self.kube.request("GET", self.path)
        except ApiError as err:
            if err.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": LEASE_NAME, "namespace": self.namespace},
                    "spec": {**spec, "acquireTime": spec["renewTime"]}}  # fmt: skip
            try:
                self.kube.request("POST", self.path.rsplit("/", 1)[0], body=body)
                return True
            except ApiError as err2:
                if err2.status == 409:
                    return False
                raise
        held = lease.get("spec", {})
        if held.get("holderIdentity") != self.identity:
            renewed = held.get("renewTime")
            if renewed:
                last = datetime.strptime(renewed, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
                ttl = timedelta(seconds=int(held.get("leaseDurationSeconds") or self.duration))
                if datetime.now(UTC) < last + ttl:
                    return False
            spec["acquireTime"] = spec["renewTime"]
            spec["leaseTransitions"] = int(held.get("leaseTransitions") or 0) + 1
        lease["spec"] = {**held, **spec}
        try:
            self.kube.request("PUT", self.path, body=lease)  # fails with 409 if someone won
            return True
        except ApiError as err:
            if err.status == 409:
                return False
            raise


async def _run_elected(cfg: RunConfig, kube: Kube, operate: Any) -> None:
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    lease = Lease(kube, cfg.lease_namespace, identity, cfg.lease_duration)
    renew_every = max(1.0, cfg.lease_duration / 3)
    log.info("leader election: %s waits for lease %s/%s", identity, cfg.lease_namespace, LEASE_NAME)
    while not await asyncio.to_thread(lease.try_acquire):
        await asyncio.sleep(renew_every / 2)
    log.info("leader election: %s holds lease %s/%s", identity, cfg.lease_namespace, LEASE_NAME)
    stop = asyncio.Event()
    task = asyncio.create_task(operate(stop))
    last_ok = asyncio.get_running_loop().time()
    while not task.done():
        await asyncio.sleep(renew_every)
        try:
            if await asyncio.to_thread(lease.try_acquire):
                last_ok = asyncio.get_running_loop().time()
                continue
        except ApiError as err:
            log.warning("leader election: renewing the lease failed: %s", err)
        if asyncio.get_running_loop().time() - last_ok > cfg.lease_duration - renew_every:
            stop.set()
            await task
            raise UserError("lost the leader lease; exiting so the Deployment restarts this pod")
    await task


async def serve_liveness(url: str, healthy: Any) -> Any:
    """GET <path> answers 200 while `healthy()`; followers answer too (they are alive, waiting)."""
    from urllib.parse import urlparse

    from aiohttp import web

    parts = urlparse(url)

    async def probe(_: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get(parts.path or "/healthz", probe)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port or 8080).start()
    return runner


def run(cfg: RunConfig) -> None:
    """Run the operator until interrupted (blocks)."""
    api = make_api_client(cfg.kubeconfig, pool_size=cfg.workers * 3)
    kube = Kube(api)
    try:
        catalog = load_catalog_or_none(cfg.options.catalog)
        knative = kube.has_api("serving.knative.dev/v1")
    except ApiError as err:
        raise UserError(f"cannot reach the Kubernetes API: {err}") from err
    log.info(
        "catalog: %s; Knative Serving: %s",
        f"{len(catalog)} modules from {cfg.options.catalog}"
        if catalog
        else "none (spec.image only)",
        "yes" if knative else "no (minReplicas 0 runs 1 replica)",
    )
    reconciler = Reconciler(
        kube, cfg.options, catalog=catalog, knative=knative, io_workers=cfg.workers * 2
    )
    ctl = Controller(reconciler, workers=cfg.workers)
    registry = kopf.OperatorRegistry()
    register(registry, ctl, knative=knative)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(cfg.kubeconfig)

    settings = kopf.OperatorSettings()
    hardened_settings(settings, cfg.workers)

    ready = asyncio.Event()  # kopf sets it once its watches and indexes are up
    acting = {"now": False}

    async def operate(stop: asyncio.Event) -> None:
        acting["now"] = True
        extra: list[asyncio.Task[None]] = []
        if cfg.options.catalog:
            extra.append(asyncio.create_task(watch_catalog(ctl, cfg.options.catalog)))
        stop_flag = asyncio.Event()

        async def relay() -> None:
            await stop.wait()
            stop_flag.set()

        extra.append(asyncio.create_task(relay()))
        try:
            await kopf.operator(
                registry=registry,
                settings=settings,
                standalone=True,
                clusterwide=not cfg.namespaces,
                namespaces=cfg.namespaces,
                stop_flag=stop_flag,
                ready_flag=ready,
            )
        finally:
            for t in extra:
                t.cancel()
            ctl.shutdown()

    async def main() -> None:
        health = None
        if cfg.liveness:
            # Alive = waiting for the lease, or acting with kopf up (a stuck start fails it).
            health = await serve_liveness(cfg.liveness, lambda: not acting["now"] or ready.is_set())
        try:
            await asyncio.to_thread(wait_for_deepmodule_api, kube, cfg.namespaces, cfg.api_timeout)
            if cfg.leader_elect:
                await _run_elected(cfg, kube, operate)
            else:
                await operate(asyncio.Event())
        finally:
            if health is not None:
                await health.cleanup()

    if threading.current_thread() is not threading.main_thread():
        raise UserError("the operator must run in the main thread (it handles signals)")
    asyncio.run(main())
