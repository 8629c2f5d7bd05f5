"""The shared work queue: coalescing, one timer per key, backoff that never gives up, resync."""

from __future__ import annotations

import asyncio

import pytest

from deepmarket.controller.workqueue import (
    GONE,
    Key,
    QueueSettings,
    Result,
    TokenBucket,
    WorkQueue,
    backoff_delay,
    jittered,
)

A = Key("DeepModule", "ns", "a")
B = Key("DeepModule", "ns", "b")


async def until(check, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def test_backoff_doubles_per_key_and_is_capped():
    assert [backoff_delay(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay(10_000, 1.0, 300.0) == 300.0  # no overflow, still capped


def test_jitter_stretches_the_period_by_at_most_its_share():
    assert jittered(600, 0.1, 0.0) == 600
    assert jittered(600, 0.1, 0.999) < 660


def test_token_bucket_allows_a_burst_then_spaces_reservations():
    now = [0.0]
    bucket = TokenBucket(qps=10, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0, 0, 0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    now[0] = 10.0  # refilled, never above the burst
    assert [bucket.reserve() for _ in range(3)] == [0, 0, 0]


def test_bad_settings_are_refused():
    for kwargs in (
        {"workers": 0},
        {"backoff_base": 0},
        {"backoff_base": 10, "backoff_cap": 1},
        {"retry_qps": 0},
        {"resync_period": 0},
        {"resync_jitter": 2},
    ):
        with pytest.raises(ValueError):
            QueueSettings(**kwargs)


def test_adds_coalesce_and_a_key_never_runs_twice_at_once():
    async def main() -> None:
        running: set[Key] = set()
        calls: list[Key] = []
        gate = asyncio.Event()

        async def reconcile(key):
            assert key not in running, "the same key reconciled concurrently"
            running.add(key)
            calls.append(key)
            await gate.wait()
            running.discard(key)

        q = WorkQueue(reconcile, QueueSettings(workers=4, resync_period=None))
        q.start()
        for _ in range(5):
            q.add(A)
        await until(lambda: calls == [A], "first pass")
        for _ in range(5):  # added while running: exactly one more pass afterwards
            q.add(A)
        q.add(B)
        await until(lambda: B in calls, "b runs alongside")
        gate.set()
        await until(lambda: calls.count(A) == 2, "second pass of a")
        await asyncio.sleep(0.05)
        assert calls.count(A) == 2 and calls.count(B) == 1
        q.shutdown()

    asyncio.run(main())


def test_failures_retry_with_growing_per_key_delays_and_never_give_up():
    async def main() -> None:
        fails = {"left": 12}
        seen: list[int] = []

        async def reconcile(key):
            seen.append(q.failures(key))
            if fails["left"]:
                fails["left"] -= 1
                raise RuntimeError("admission webhook failed")
            return Result()

        # A tiny base so twelve retries take milliseconds; the cap keeps the delays bounded.
        settings = QueueSettings(backoff_base=0.001, backoff_cap=0.004, resync_period=None)
        q = WorkQueue(reconcile, settings)
        q.start()
        q.add(A)
        await until(lambda: len(seen) == 13, "13 attempts (more than the old limit of 8)")
        # Each attempt saw the failures so far: 0, 1, …, 12; the success reset the count.
        assert seen == list(range(13))
        assert q.failures(A) == 0 and q.retries == 12
        q.shutdown()

    asyncio.run(main())


def test_one_pending_timer_per_key_the_earliest_wins():
    async def main() -> None:
        async def reconcile(key):
            return Result()

        q = WorkQueue(reconcile, QueueSettings(resync_period=None))
        q.add_after(A, 100)
        q.add_after(A, 50)
        q.add_after(A, 200)  # later than pending: ignored
        assert 49 < q.pending_delay(A) <= 50
        assert len(q._timers) == 1
        # Failures count per key: a's failures do not lengthen b's delay.
        assert q.add_rate_limited(A) == 1.0
        assert q.add_rate_limited(A) == 2.0
        assert q.add_rate_limited(B) == 1.0
        assert q.pending_delay(A) <= 2.0 and len(q._timers) == 2
        q.shutdown()

    asyncio.run(main())


def test_an_overall_rate_limit_spaces_a_mass_failure():
    async def main() -> None:
        async def reconcile(key):
            return Result()

        now = [0.0]
        settings = QueueSettings(retry_qps=2, retry_burst=2, backoff_base=0.5, backoff_cap=1)
        q = WorkQueue(reconcile, settings, clock=lambda: now[0])
        delays = [q.add_rate_limited(Key("DeepModule", "ns", f"m{i}")) for i in range(6)]
        # Per key each is a first failure (0.5 s), but only 2 fit the burst; then 2 per second.
        assert delays == [0.5, 0.5, 0.5, 1.0, 1.5, 2.0]
        q.shutdown()

    asyncio.run(main())


def test_success_resyncs_with_jitter_and_gone_leaves_no_trace():
    async def main() -> None:
        alive = {A: True}
        calls: list[Key] = []

        async def reconcile(key):
            calls.append(key)
            if not alive.get(key):
                return GONE
            return None

        settings = QueueSettings(resync_period=0.02, resync_jitter=0.5)
        q = WorkQueue(reconcile, settings, draw=lambda: 0.5)
        q.start()
        q.add(A)
        await until(lambda: calls.count(A) >= 3, "periodic resyncs without any add")
        alive[A] = False  # deleted without us hearing of it: the next resync finds it gone
        await until(lambda: q.tracked() == 0, "no state left for a deleted key")
        n = len(calls)
        await asyncio.sleep(0.1)
        assert len(calls) == n  # and no more resyncs of it
        q.shutdown()

    asyncio.run(main())


def test_drop_forgets_failures_and_timers_of_a_deleted_key():
    async def main() -> None:
        async def reconcile(key):
            raise RuntimeError("keeps failing")

        q = WorkQueue(reconcile, QueueSettings(backoff_base=5, resync_period=None))
        q.start()
        q.add(A)
        await until(lambda: q.failures(A) == 1, "one failure")
        assert q.tracked() == 1
        q.drop(A)  # the DeepModule was deleted while failing
        assert q.tracked() == 0 and q.failures(A) == 0 and q.pending_delay(A) is None
        q.shutdown()

    asyncio.run(main())


def test_shutdown_stops_new_work():
    async def main() -> None:
        calls: list[Key] = []

        async def reconcile(key):
            calls.append(key)

        q = WorkQueue(reconcile, QueueSettings(resync_period=None))
        q.start()
        q.add_after(A, 0.01)
        q.shutdown()
        await q.join()
        q.add(B)
        await asyncio.sleep(0.05)
        assert calls == [] and q.tracked() == 0

    asyncio.run(main())
