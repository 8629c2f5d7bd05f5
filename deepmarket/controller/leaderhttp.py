"""HTTP endpoints that only the acting replica can answer (TrainingRun progress), served by
every replica so that one Service in front of all of them works.

The acting replica (the leader, or the only one) answers itself. A follower forwards the
request to the leader's address, which the leader writes on the Lease it holds (annotation
`deepmarket.dev/leader-endpoint`, from its pod IP) and every follower reads anyway while it
waits: no extra API call and no extra RBAC (no pod labels to patch, no Endpoints to read).
With no leader known, or the leader unreachable, a follower answers 503 with Retry-After, and
the caller retries. A forwarded request is never forwarded again (no loops while the lease
moves).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("deepmarket.controller.leaderhttp")

LEADER_ENDPOINT_ANNOTATION = "deepmarket.dev/leader-endpoint"
FORWARDED_BY = "X-Deepmarket-Forwarded-By"
FORWARD_TIMEOUT_S = 5.0
RETRY_AFTER_S = "2"
MAX_BODY = 64 * 1024
# Request headers a forward keeps (the rest are hop-by-hop or the caller's business).
KEPT_HEADERS = ("Authorization", "Content-Type")

Handler = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # aiohttp pattern, e.g. /progress/{namespace}/{name}
    handler: Handler


def advertised_url(pod_ip: str | None, listen: str | None) -> str | None:
    """The URL a follower reaches this replica's routes at: its pod IP and the listen port."""
    if not pod_ip or not listen:
        return None
    port = listen.rpartition(":")[2]
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{port}"


def forward_decision(
    acting: bool, forwarded_by: str | None, leader: str | None
) -> tuple[str, str | None]:
    """("answer", None) | ("forward", leader URL) | ("unavailable", why) — pure."""
    if acting:
        return "answer", None
    if forwarded_by:
        return "unavailable", "forwarded to a replica that does not lead (the lease moved)"
    if not leader:
        return "unavailable", "no operator replica leads yet"
    return "forward", leader


async def serve_routes(
    routes: list[Route],
    listen: str,
    *,
    acting: Callable[[], bool],
    leader_url: Callable[[], str | None],
    identity: str,
) -> Any:
    """Serve `routes` at `listen`; returns the aiohttp runner (call .cleanup() to stop)."""
    import aiohttp
    from aiohttp import web

    session: dict[str, aiohttp.ClientSession] = {}

    def unavailable(why: str) -> web.Response:
        return web.json_response(
            {"message": f"{why}; retry"}, status=503, headers={"Retry-After": RETRY_AFTER_S}
        )

    async def forward(request: web.Request, leader: str) -> web.Response:
        if "s" not in session:
            timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
            session["s"] = aiohttp.ClientSession(timeout=timeout)
        headers = {h: request.headers[h] for h in KEPT_HEADERS if h in request.headers}
        headers[FORWARDED_BY] = identity
        body = await request.content.read(MAX_BODY)
        try:
            async with session["s"].request(
                request.method, leader + request.rel_url.path_qs, data=body, headers=headers
            ) as answer:
                data = await answer.read()
                kind = answer.headers.get("Content-Type")
                return web.Response(
                    status=answer.status, body=data, headers={"Content-Type": kind} if kind else {}
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            log.warning("forwarding %s to the leader at %s failed: %s", request.path, leader, err)
            return unavailable("the leading operator replica did not answer")

    def dispatch(handler: Handler) -> Handler:
        async def answer(request: web.Request) -> web.StreamResponse:
            what, arg = forward_decision(acting(), request.headers.get(FORWARDED_BY), leader_url())
            if what == "answer":
                return await handler(request)
            if what == "forward" and arg:
                return await forward(request, arg)
            return unavailable(arg or "no leader")

        return answer

    app = web.Application(client_max_size=MAX_BODY)
    for route in routes:
        app.router.add_route(route.method, route.path, dispatch(route.handler))

    async def close_session(_: web.Application) -> None:
        if "s" in session:
            await session["s"].close()

    app.on_cleanup.append(close_session)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host.strip("[]") or "0.0.0.0", int(port)).start()
    log.info("leader routes on %s: %s", listen, ", ".join(r.path for r in routes))
    return runner
