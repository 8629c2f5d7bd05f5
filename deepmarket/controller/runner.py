"""`deepmarket controller run`: kopf hardened for production, plus optional leader election.

Resources register through `RESOURCES` (one `setup(ctx)` per resource package, see
`deepmarket.controller.context`); the runner starts their handlers, work queues and background
loops together, and stops them together.

More than one replica: with `--leader-elect` every replica competes for a coordination.k8s.io
Lease, with client-go's semantics. A follower judges the lease expired only by its own
monotonic clock — the lease duration after it last *saw the record change* — never by comparing
the holder's renewTime with its own wall clock (clocks skew). The leader renews every retry
period; if no renewal succeeded within the renew deadline (shorter than the lease), it stops
writing at once (a fence in the API client), stops its handlers and exits non-zero, so the
Deployment restarts it as a follower — all before a follower may take over. On SIGTERM the
leader releases the lease, so a follower takes over at once. API errors while waiting are
retried, never fatal. Without `--leader-elect` (the default, and what `deepmarket dev` uses)
the operator runs standalone: no peering objects, no writes at all while nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf

from deepmarket.catalog.model import Catalog
from deepmarket.controller import DEEPMODULE_API
from deepmarket.controller import deepmodule as deepmodule_resource
from deepmarket.controller import sync as sync_resource
from deepmarket.controller import training as training_resource
from deepmarket.controller.context import OperatorContext, ResourceSetup
from deepmarket.controller.kube import ApiError, Kube, connection_info, make_api_client
from deepmarket.controller.leaderhttp import (
    LEADER_ENDPOINT_ANNOTATION,
    advertised_url,
    serve_routes,
)
from deepmarket.controller.options import Options
from deepmarket.controller.sync.receiver import Receiver
from deepmarket.controller.sync.receiver import serve as serve_receiver
from deepmarket.controller.workqueue import QueueSettings
from deepmarket.errors import UserError

log = logging.getLogger("deepmarket.controller")

LEASE_NAME = "deepmarket-operator"
# client-go's defaults (kube-controller-manager, controller-runtime): 15 s / 10 s / 2 s.
LEASE_DURATION_S = 15.0
RENEW_DEADLINE_S = 10.0
RETRY_PERIOD_S = 2.0
CATALOG_POLL_S = 15.0
KNATIVE_API = "serving.knative.dev/v1"
OPTIONAL_APIS = (KNATIVE_API,)

# The resources this operator runs, each a `setup(ctx)`; TrainingRun and sync append theirs.
RESOURCES: tuple[ResourceSetup, ...] = (
    deepmodule_resource.setup,
    sync_resource.setup,
    training_resource.setup,
)


@dataclass(frozen=True)
class Election:
    """Leader-election timings (seconds), validated as client-go does."""

    lease_duration: float = LEASE_DURATION_S
    renew_deadline: float = RENEW_DEADLINE_S
    retry_period: float = RETRY_PERIOD_S

    def problems(self) -> list[str]:
        out = []
        if self.retry_period <= 0:
            out.append("--retry-period must be more than 0 seconds")
        if self.renew_deadline <= self.retry_period * 1.2:
            out.append("--renew-deadline must be more than 1.2 x --retry-period")
        if self.lease_duration <= self.renew_deadline:
            out.append(
                "--lease-duration must be longer than --renew-deadline (a leader stops "
                "writing before its lease can expire)"
            )
        return out


@dataclass(frozen=True)
class RunConfig:
    options: Options
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    kubeconfig: str | None = None
    liveness: str | None = None  # e.g. http://0.0.0.0:8080/healthz
    leader_elect: bool = False
    lease_namespace: str = "deepmarket-system"
    election: Election = field(default_factory=Election)
    queue: QueueSettings = field(default_factory=QueueSettings)
    api_timeout: float = 120.0  # how long to wait for the DeepModule API to be served
    resources: tuple[ResourceSetup, ...] = RESOURCES
    webhook_listen: str | None = None  # HOST:PORT of the CatalogSource webhook receiver

    @property
    def workers(self) -> int:
        return self.queue.workers


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


async def watch_catalog(ctx: OperatorContext, root: Path) -> None:
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
        ctx.set_catalog(catalog)
        log.info("catalog reloaded: %d modules", len(catalog or ()))


async def watch_optional_apis(ctx: OperatorContext, kube: Kube, every: float) -> None:
    """Notice Knative Serving installed (or removed) after the start: re-check every `every`."""
    while True:
        await asyncio.sleep(every)
        for group_version in OPTIONAL_APIS:
            try:
                served = await asyncio.to_thread(kube.has_api, group_version)
            except ApiError as err:
                log.debug("checking for %s: %s", group_version, err)
                continue
            if served != (ctx.knative if group_version == KNATIVE_API else served):
                log.info("%s is %s now", group_version, "served" if served else "gone")
                ctx.set_api(group_version, served)


def _wall_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """A coordination.k8s.io/v1 Lease, held the way client-go's leaderelection holds it.

    Expiry is judged by `monotonic` only: the lease duration after this process last observed
    a change of the record. renewTime is written for people and tools, never compared."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        identity: str,
        election: Election,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = _wall_now,
        advertise: str | None = None,
    ) -> None:
        self.kube, self.namespace, self.identity = kube, namespace, identity
        # Where followers forward leader-only HTTP requests to while this replica leads.
        self.advertise = advertise
        self.leader_url: str | None = None
        self.election = election
        self.monotonic, self.wall = monotonic, wall
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE_NAME}"
        self.observed: dict[str, Any] | None = None
        self.observed_at = 0.0

    def _observe(self, record: dict[str, Any]) -> None:
        if record != self.observed:
            self.observed = dict(record)
            self.observed_at = self.monotonic()

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this process holds the lease afterwards."""
        now = self.wall()
        mine = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.election.lease_duration)),
            "renewTime": now,
            "acquireTime": now,
        }
        try:
            lease = self.kube.request("GET", self.path)
        except ApiError as err:
            if err.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": LEASE_NAME, "namespace": self.namespace},
                    "spec": {**mine, "leaseTransitions": 0}}  # fmt: skip
            self._advertise(body)
            try:
                self.kube.request("POST", self.path.rsplit("/", 1)[0], body=body)
            except ApiError as err2:
                if err2.status == 409:
                    return False
                raise
            self._observe(body["spec"])
            return True
        held = lease.get("spec") or {}
        self._observe(held)
        holder = held.get("holderIdentity") or ""
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        self.leader_url = annotations.get(LEADER_ENDPOINT_ANNOTATION) if holder else None
        if holder and holder != self.identity:
            duration = float(held.get("leaseDurationSeconds") or self.election.lease_duration)
            if self.monotonic() < self.observed_at + duration:
                return False  # still valid, as far as this process has seen
        spec = {**held, **mine}
        if holder == self.identity:
            spec["acquireTime"] = held.get("acquireTime") or now
            spec["leaseTransitions"] = int(held.get("leaseTransitions") or 0)
        else:
            spec["leaseTransitions"] = int(held.get("leaseTransitions") or 0) + 1
        lease["spec"] = spec
        self._advertise(lease)
        try:
            self.kube.request("PUT", self.path, body=lease)  # 409 if someone else won
        except ApiError as err:
            if err.status == 409:
                return False
            raise
        self._observe(spec)
        return True

    def _advertise(self, lease: dict[str, Any]) -> None:
        """This replica's leader endpoint on the lease it is about to hold (or none)."""
        meta = lease.setdefault("metadata", {})
        annotations = dict(meta.get("annotations") or {})
        if self.advertise:
            annotations[LEADER_ENDPOINT_ANNOTATION] = self.advertise
        else:
            annotations.pop(LEADER_ENDPOINT_ANNOTATION, None)
        meta["annotations"] = annotations
        self.leader_url = self.advertise

    def release(self) -> bool:
        """Give the lease up (on shutdown) so a follower takes over now, not after expiry."""
        lease = self.kube.request("GET", self.path)
        held = lease.get("spec") or {}
        if held.get("holderIdentity") != self.identity:
            return False
        lease["spec"] = {**held, "holderIdentity": "", "leaseDurationSeconds": 1,
                         "renewTime": self.wall()}  # fmt: skip
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        annotations.pop(LEADER_ENDPOINT_ANNOTATION, None)
        self.kube.request("PUT", self.path, body=lease)
        return True


class Fence:
    """Whether this replica may still write: until the renew deadline after the start of the
    last successful renewal (a follower waits a whole lease after it *sees* that renewal)."""

    def __init__(self, deadline: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.deadline, self.monotonic = deadline, monotonic
        self.until = float("-inf")

    def renewed(self, attempt_started: float) -> None:
        self.until = attempt_started + self.deadline

    def open(self) -> bool:
        return self.monotonic() < self.until

    def close(self) -> None:
        self.until = float("-inf")


def _identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


async def _run_elected(cfg: RunConfig, elector: LeaderElector, fence: Fence, operate: Any) -> None:
    e = cfg.election
    where = f"{cfg.lease_namespace}/{LEASE_NAME}"
    log.info("leader election: %s waits for lease %s", elector.identity, where)
    last_error = ""
    while True:
        started = time.monotonic()
        try:
            if await asyncio.to_thread(elector.try_acquire_or_renew):
                fence.renewed(started)
                break
        except ApiError as err:  # an apiserver restart, a timeout: keep waiting, never crash
            if str(err) != last_error:
                log.warning("leader election: cannot read lease %s (%s); retrying", where, err)
                last_error = str(err)
        await asyncio.sleep(e.retry_period * (1 + 1.2 * random.random()))  # client-go jitter
    log.info(
        "leader election: %s holds lease %s (lease %gs, renew deadline %gs, retry %gs)",
        elector.identity, where, e.lease_duration, e.renew_deadline, e.retry_period,
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(operate(stop))
    lost = False
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=e.retry_period)
        if done:
            break
        started = time.monotonic()
        try:
            if await asyncio.to_thread(elector.try_acquire_or_renew):
                fence.renewed(started)
                continue
            log.error("leader election: another replica holds lease %s now", where)
            fence.close()
        except ApiError as err:
            log.warning("leader election: renewing lease %s failed: %s", where, err)
        if not fence.open():
            lost = True
            fence.close()
            stop.set()
            break
    if lost:
        log.error("leader election: lost lease %s; stopped writing, stopping", where)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=e.lease_duration)
        raise UserError("lost the leader lease; exiting so the Deployment restarts this pod")
    await task
    # Stopped (SIGTERM or Ctrl-C): let a follower take over now instead of after expiry.
    fence.close()
    try:
        if await asyncio.to_thread(elector.release):
            log.info("leader election: released lease %s", where)
    except ApiError as err:
        log.warning("leader election: could not release lease %s: %s", where, err)


async def serve_liveness(url: str, healthy: Any, ready: Any = None) -> Any:
    """GET <path> answers 200 while `healthy()`; followers answer too (they are alive, waiting).
    GET /readyz (same port) answers 200 while `ready()`: the Deployment's readiness probe."""
    from urllib.parse import urlparse

    from aiohttp import web

    parts = urlparse(url)

    async def probe(_: web.Request) -> web.Response:
        ok = healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def readiness(_: web.Request) -> web.Response:
        ok = bool(ready()) if ready is not None else healthy()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get(parts.path or "/healthz", probe)
    if (parts.path or "/healthz") != "/readyz":
        app.router.add_get("/readyz", readiness)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port or 8080).start()
    return runner


def run(cfg: RunConfig) -> None:
    """Run the operator until interrupted (blocks)."""
    problems = cfg.election.problems() if cfg.leader_elect else []
    if problems:
        raise UserError("; ".join(problems))
    api = make_api_client(cfg.kubeconfig, pool_size=cfg.workers * 3)
    kube = Kube(api)
    try:
        catalog = load_catalog_or_none(cfg.options.catalog)
        knative = kube.has_api(KNATIVE_API)
    except ApiError as err:
        raise UserError(f"cannot reach the Kubernetes API: {err}") from err
    log.info(
        "catalog: %s; Knative Serving: %s",
        f"{len(catalog)} modules from {cfg.options.catalog}"
        if catalog
        else "none (spec.image only)",
        "yes" if knative else "no (minReplicas 0 runs 1 replica; re-checked every resync)",
    )
    fence = Fence(cfg.election.renew_deadline)
    writer = kube.fenced(fence.open) if cfg.leader_elect else kube
    registry = kopf.OperatorRegistry()
    ctx = OperatorContext(
        registry=registry,
        kube=writer,
        options=cfg.options,
        namespaces=cfg.namespaces,
        queue_settings=cfg.queue,
        catalog=catalog,
        knative=knative,
    )
    for setup in cfg.resources:
        setup(ctx)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(cfg.kubeconfig)

    settings = kopf.OperatorSettings()
    hardened_settings(settings, cfg.workers)

    ready = asyncio.Event()  # kopf sets it once its watches and indexes are up
    api_served = asyncio.Event()
    acting = {"now": False}
    api_poll = min(60.0, cfg.queue.resync_period or 60.0)

    async def operate(stop: asyncio.Event) -> None:
        acting["now"] = True
        extra: list[asyncio.Task[None]] = []
        for queue in ctx.queues:
            queue.start()
        if cfg.options.catalog:
            extra.append(asyncio.create_task(watch_catalog(ctx, cfg.options.catalog)))
        extra.append(asyncio.create_task(watch_optional_apis(ctx, kube, api_poll)))
        extra.extend(asyncio.create_task(loop()) for loop in ctx.background)
        stop_flag = asyncio.Event()

        async def relay() -> None:
            await stop.wait()
            stop_flag.set()
            for queue in ctx.queues:  # no new reconcile starts once told to stop
                queue.shutdown()

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
                # kopf would ask the passwd database for a name; an image's non-root UID
                # (65532, or OpenShift's arbitrary ones) has none, and kopf crashed on it.
                identity=_identity(),
            )
        finally:
            for queue in ctx.queues:
                queue.shutdown()
            for t in extra:
                t.cancel()
            for callback in ctx.shutdowns:
                callback()

    async def main() -> None:
        # As PID 1 in a container, a signal without a handler is ignored: a replica waiting for
        # the lease would sit out SIGTERM until the kubelet's SIGKILL (30 s per pod, at every
        # rollout and uninstall). kopf installs its own handler once this replica acts.
        main_task = asyncio.current_task()
        if main_task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        elector: LeaderElector | None = None
        health = None
        if cfg.liveness:
            # Alive = waiting for the lease, or acting with kopf up (a stuck start fails it).
            # Ready = the API answers and this replica either waits warm for the lease or
            # acts with kopf's watches up (what a rolling update waits for before going on).
            health = await serve_liveness(
                cfg.liveness,
                lambda: not acting["now"] or ready.is_set(),
                lambda: api_served.is_set() and (not acting["now"] or ready.is_set()),
            )
        routes = None
        listen = cfg.options.progress_listen
        if listen and ctx.leader_routes:
            # Every replica serves them; a follower forwards to the leader (leaderhttp.py).
            routes = await serve_routes(
                ctx.leader_routes, listen, acting=lambda: acting["now"],
                leader_url=lambda: elector.leader_url if elector else None,
                identity=_identity(),
            )  # fmt: skip
        hooks = None
        if cfg.webhook_listen:
            # Every replica receives; the annotations a delivery writes reach the leader's watch.
            host, _, port = cfg.webhook_listen.rpartition(":")
            hooks = await serve_receiver(Receiver(kube), host or "0.0.0.0", int(port))
            log.info("webhook receiver on %s", cfg.webhook_listen)
        try:
            await asyncio.to_thread(wait_for_deepmodule_api, kube, cfg.namespaces, cfg.api_timeout)
            api_served.set()
            if cfg.leader_elect:
                e = cfg.election
                # Lease calls time out well within the renew deadline (a hung call is a failure).
                lease_kube = kube.fenced(lambda: True, timeout=max(1.0, e.renew_deadline / 2))
                elector = LeaderElector(
                    lease_kube, cfg.lease_namespace, _identity(), e,
                    advertise=advertised_url(os.environ.get("POD_IP"), listen),
                )  # fmt: skip
                await _run_elected(cfg, elector, fence, operate)
            else:
                await operate(asyncio.Event())
        finally:
            if routes is not None:
                await routes.cleanup()
            if hooks is not None:
                await hooks.cleanup()
            if health is not None:
                await health.cleanup()

    if threading.current_thread() is not threading.main_thread():
        raise UserError("the operator must run in the main thread (it handles signals)")
    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        log.info("stopped (SIGTERM) before acting")
