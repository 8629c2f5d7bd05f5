"""Leader-only HTTP routes (TrainingRun progress) served by every replica: the leader's address
on the Lease, a follower's forward, and the 503s while no replica leads (real aiohttp servers
on loopback; the Lease in memory with the apiserver's optimistic concurrency)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from test_operator_core_unit import LeaseApi

from deepmarket.controller.leaderhttp import (
    FORWARDED_BY,
    LEADER_ENDPOINT_ANNOTATION,
    Route,
    advertised_url,
    forward_decision,
    serve_routes,
)
from deepmarket.controller.runner import Election, LeaderElector
from deepmarket.modules.serve import free_port


def test_the_leader_advertises_its_address_on_the_lease_and_followers_read_it():
    api = LeaseApi()
    e = Election()
    a = LeaderElector(api, "ns", "a", e, monotonic=lambda: 0.0, advertise="http://10.0.0.2:8081")
    b = LeaderElector(api, "ns", "b", e, monotonic=lambda: 0.0, advertise="http://10.0.0.3:8081")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert (
        api.lease["metadata"]["annotations"][LEADER_ENDPOINT_ANNOTATION] == "http://10.0.0.2:8081"
    )
    assert b.leader_url == "http://10.0.0.2:8081"
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()  # renewals keep it
    assert b.leader_url == "http://10.0.0.2:8081"
    assert a.release()
    assert LEADER_ENDPOINT_ANNOTATION not in api.lease["metadata"]["annotations"]
    assert b.try_acquire_or_renew()  # released: b takes over and advertises itself
    assert (
        api.lease["metadata"]["annotations"][LEADER_ENDPOINT_ANNOTATION] == "http://10.0.0.3:8081"
    )
    assert not a.try_acquire_or_renew() and a.leader_url == "http://10.0.0.3:8081"
    # A leader with nothing to advertise removes its predecessor's address.
    c = LeaderElector(api, "ns", "c", e, monotonic=lambda: 100.0)
    api.lease["spec"]["holderIdentity"] = ""
    assert c.try_acquire_or_renew()
    assert LEADER_ENDPOINT_ANNOTATION not in api.lease["metadata"]["annotations"]


def test_decisions_and_addresses():
    assert forward_decision(True, None, None) == ("answer", None)
    assert forward_decision(True, "b", "http://x") == ("answer", None)
    assert forward_decision(False, None, "http://x:1") == ("forward", "http://x:1")
    assert forward_decision(False, None, None)[0] == "unavailable"
    assert forward_decision(False, "pod-b", "http://x:1")[0] == "unavailable"  # no loops
    assert advertised_url("10.85.0.3", "0.0.0.0:8081") == "http://10.85.0.3:8081"
    assert advertised_url("fd00::5", "[::]:8081") == "http://[fd00::5]:8081"
    assert advertised_url(None, "0.0.0.0:8081") is None
    assert advertised_url("10.0.0.1", None) is None


def post(url: str, token: str, body: bytes = b'{"percent": 5}') -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


def test_a_follower_forwards_to_the_leader_and_says_503_without_one():
    from aiohttp import web

    received: list[tuple[str, str, dict]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(
            (request.match_info["name"], request.headers.get("Authorization", ""),
             json.loads(await request.read()))
        )  # fmt: skip
        ok = request.headers.get("Authorization") == "Bearer good"
        return web.Response(status=204 if ok else 403)

    routes = [Route("POST", "/progress/{namespace}/{name}", handler)]
    ports = {k: free_port() for k in ("leader", "follower", "orphan")}
    leader_url = f"http://127.0.0.1:{ports['leader']}"
    state = {"leader": leader_url}

    async def scenario() -> None:
        runners = [
            await serve_routes(routes, f"127.0.0.1:{ports['leader']}", acting=lambda: True,
                               leader_url=lambda: None, identity="a"),
            await serve_routes(routes, f"127.0.0.1:{ports['follower']}", acting=lambda: False,
                               leader_url=lambda: state["leader"], identity="b"),
            await serve_routes(routes, f"127.0.0.1:{ports['orphan']}", acting=lambda: False,
                               leader_url=lambda: None, identity="c"),
        ]  # fmt: skip
        try:
            follower = f"http://127.0.0.1:{ports['follower']}/progress/ns/run-1"
            assert (await asyncio.to_thread(post, follower, "good"))[0] == 204
            assert (await asyncio.to_thread(post, follower, "bad"))[0] == 403  # the leader's
            assert received[0] == ("run-1", "Bearer good", {"percent": 5})
            orphan = f"http://127.0.0.1:{ports['orphan']}/progress/ns/run-1"
            code, headers = await asyncio.to_thread(post, orphan, "good")
            assert code == 503 and headers.get("Retry-After") == "2"
            # A request a follower already forwarded is not forwarded again.
            req = urllib.request.Request(
                follower, data=b"{}", method="POST", headers={FORWARDED_BY: "c"}
            )
            try:
                await asyncio.to_thread(urllib.request.urlopen, req, None, 10)
                raise AssertionError("forwarded twice")
            except urllib.error.HTTPError as err:
                assert err.code == 503
            # The leader is gone: 503, so the pod retries, not a hang or a 500.
            state["leader"] = f"http://127.0.0.1:{free_port()}"
            assert (await asyncio.to_thread(post, follower, "good"))[0] == 503
            assert len(received) == 2
        finally:
            for runner in runners:
                await runner.cleanup()

    asyncio.run(scenario())
