"""The controllers' work queue (shared by every resource's controller), as client-go's is.

- **Coalescing**: a key is queued at most once; a key added while it is being reconciled is
  reconciled once more afterwards, never twice at the same time.
- **One pending timer per key**: `add_after` keeps the earliest wanted time, so retries, resyncs
  and requeues of one key never pile up.
- **Retries never give up**: a failed reconcile is retried after a per-key exponential delay
  (base · 2^failures, capped) that is also held to an overall token bucket (so a mass failure
  does not hammer the apiserver); the counter resets on the first success.
- **Periodic resync**: after each success the key is requeued after the resync period plus up to
  `jitter` of it at random, so state no watch reports (or a missed event) is seen at last, and
  1,000 objects do not resync in the same second.

Resource-agnostic: keys are `Key(kind, namespace, name)` and the work is an async callable.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import NamedTuple

log = logging.getLogger("deepmarket.controller")


class Key(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Result:
    """What a reconcile asks of the queue; `None` means the same as `Result()`."""

    requeue_after: float | None = None  # look again this soon (instead of the resync period)
    gone: bool = False  # the object no longer exists: drop every trace of the key


GONE = Result(gone=True)


@dataclass(frozen=True)
class QueueSettings:
    workers: int = 16
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    retry_qps: float = 10.0  # overall retry rate (client-go's default bucket: 10/s, burst 100)
    retry_burst: int = 100
    resync_period: float | None = 600.0  # None: no periodic resync
    resync_jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise ValueError("backoff base must be > 0 and at most the cap")
        if self.retry_qps <= 0 or self.retry_burst < 1:
            raise ValueError("retry rate must be > 0 and burst at least 1")
        if self.resync_period is not None and self.resync_period <= 0:
            raise ValueError("resync period must be > 0")
        if not 0 <= self.resync_jitter <= 1:
            raise ValueError("resync jitter must be between 0 and 1")


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Delay before retry number `failures` (1-based): base, 2·base, 4·base, … capped."""
    return min(cap, base * 2 ** max(0, min(failures - 1, 62)))


def jittered(period: float, jitter: float, draw: float) -> float:
    """`period` stretched by up to `jitter` of itself; `draw` is uniform in [0, 1)."""
    return period * (1.0 + jitter * draw)


class TokenBucket:
    """An overall rate limit: `reserve()` says how long to wait for the next token."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.qps, self.burst, self.clock = qps, burst, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def reserve(self) -> float:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
        self.stamp = now
        self.tokens -= 1  # may go negative: a reservation on a future token
        return 0.0 if self.tokens >= 0 else -self.tokens / self.qps


Reconcile = Callable[[Hashable], Awaitable[Result | None]]


class WorkQueue:
    """See the module docstring. `start()` inside the event loop; `shutdown()` to stop."""

    def __init__(
        self,
        reconcile: Reconcile,
        settings: QueueSettings | None = None,
        *,
        name: str = "work",
        clock: Callable[[], float] = time.monotonic,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.reconcile = reconcile
        self.settings = settings or QueueSettings()
        self.name = name
        self.clock, self.draw = clock, draw
        self.bucket = TokenBucket(self.settings.retry_qps, self.settings.retry_burst, clock)
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._dirty: set[Hashable] = set()  # queued or to be queued again after processing
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, tuple[float, asyncio.TimerHandle]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._stopped = False
        self.reconciles = 0  # counters for logs and tests
        self.retries = 0

    # -- adding work ----------------------------------------------------------------------
    def add(self, key: Hashable) -> None:
        """Reconcile `key` as soon as a worker is free (once, however often it is added)."""
        if self._stopped or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add `key` after `delay` seconds; an earlier pending time for the key wins."""
        if self._stopped:
            return
        if delay <= 0:
            self._cancel_timer(key)
            self.add(key)
            return
        when = self.clock() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= when:
                return
            pending[1].cancel()
        handle = asyncio.get_running_loop().call_later(delay, self._fire, key)
        self._timers[key] = (when, handle)

    def add_rate_limited(self, key: Hashable) -> float:
        """Count a failure of `key` and retry it after its backoff; returns the delay."""
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        s = self.settings
        delay = max(backoff_delay(n, s.backoff_base, s.backoff_cap), self.bucket.reserve())
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        """Reset `key`'s failure count (after a success)."""
        self._failures.pop(key, None)

    def drop(self, key: Hashable) -> None:
        """The object is gone: cancel its timer, forget its failures, unqueue it if waiting."""
        self._cancel_timer(key)
        self._failures.pop(key, None)
        self._dirty.discard(key)  # a queued copy is skipped by the worker (not dirty)

    def failures(self, key: Hashable) -> int:
        """How many reconciles of `key` failed in a row."""
        return self._failures.get(key, 0)

    def tracked(self) -> int:
        """Keys the queue holds any state for (a leak shows up here)."""
        return len(self._dirty | self._processing | set(self._failures) | set(self._timers))

    def pending_delay(self, key: Hashable) -> float | None:
        pending = self._timers.get(key)
        return None if pending is None else max(0.0, pending[0] - self.clock())

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        self._stopped = False
        for n in range(self.settings.workers):
            self._workers.append(asyncio.create_task(self._work(), name=f"{self.name}-{n}"))

    def shutdown(self) -> None:
        """Stop: no new reconciles start, pending timers are cancelled."""
        self._stopped = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        self._workers.clear()

    async def join(self) -> None:
        """Wait until the workers have ended (after `shutdown`)."""
        tasks = list(self._workers)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _cancel_timer(self, key: Hashable) -> None:
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[1].cancel()

    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            if key not in self._dirty or key in self._processing:
                continue  # dropped while waiting, or a duplicate left by a drop and re-add
            self._dirty.discard(key)
            self._processing.add(key)
            try:
                await self._process(key)
            finally:
                self._processing.discard(key)
                if key in self._dirty and not self._stopped:
                    self._ready.put_nowait(key)

    async def _process(self, key: Hashable) -> None:
        self.reconciles += 1
        try:
            result = await self.reconcile(key) or Result()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure: retry with backoff, never give up
            self.retries += 1
            delay = self.add_rate_limited(key)
            log.warning(
                "%s: reconcile failed (%s: %s); retry %d in %.1fs",
                key, type(exc).__name__, exc, self._failures.get(key, 0), delay,
            )  # fmt: skip
            return
        if result.gone:
            self.drop(key)
            return
        self.forget(key)
        if result.requeue_after is not None:
            self.add_after(key, result.requeue_after)
        elif self.settings.resync_period:
            s = self.settings
            self.add_after(key, jittered(s.resync_period, s.resync_jitter, self.draw()))
