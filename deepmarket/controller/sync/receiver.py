"""The webhook receiver (aiohttp), served by every operator replica.

`POST /hooks/catalogsources/<namespace>/<name>` with a GitHub push or ping. A delivery that
passes `webhook.judge` is recorded on the CatalogSource as annotations (the pushed commit and
the delivery id), which the leader's watch turns into a sync of exactly that revision; so any
replica can take the delivery, and it answers in milliseconds — GitHub gives up after 10 s.
Nothing about the payload is trusted before its signature is verified.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from deepmarket.controller.kube import ApiError, Kube, object_path
from deepmarket.controller.sync.plan import (
    API,
    REQUESTED_AT_ANNOTATION,
    REQUESTED_REVISION_ANNOTATION,
)
from deepmarket.controller.sync.webhook import MAX_BODY, Deliveries, Verdict, judge, parse_path

log = logging.getLogger("deepmarket.controller.webhook")


def _answer(verdict: Verdict) -> web.Response:
    return web.json_response({"status": verdict.status, "message": verdict.reason},
                             status=verdict.status)  # fmt: skip


class Receiver:
    def __init__(self, kube: Kube, on_accept: Callable[[str, str], None] | None = None) -> None:
        self.kube = kube
        self.deliveries = Deliveries()
        self.on_accept = on_accept  # (namespace, name) → kick the local sync, when leading

    def _secret(self, source: dict[str, Any]) -> bytes | None:
        ref = ((source.get("spec") or {}).get("webhook") or {}).get("secretRef") or {}
        if not ref.get("name"):
            return None
        ns = source["metadata"]["namespace"]
        secret = self.kube.get("v1", "Secret", ns, ref["name"])
        value = ((secret or {}).get("data") or {}).get(ref.get("key") or "secret")
        return base64.b64decode(value) if value else None

    def _record(self, ns: str, name: str, verdict: Verdict) -> None:
        notes = {
            REQUESTED_REVISION_ANNOTATION: verdict.revision,
            REQUESTED_AT_ANNOTATION: f"webhook {verdict.delivery or verdict.revision}",
        }
        self.kube.request(
            "PATCH",
            object_path(API, "CatalogSource", ns, name),
            body={"metadata": {"annotations": notes}},
            content_type="application/merge-patch+json",
        )

    async def handle(self, request: web.Request) -> web.Response:
        where = parse_path(request.path)
        if where is None:
            return _answer(Verdict(404, "no such hook; the path is a CatalogSource's "
                                        "status.webhookPath"))  # fmt: skip
        if request.method != "POST":
            return _answer(Verdict(405, "deliveries are POSTed"))
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return _answer(Verdict(415, "set the webhook's content type to application/json"))
        if (request.content_length or 0) > MAX_BODY:
            return _answer(Verdict(413, f"the body is larger than {MAX_BODY} bytes"))
        try:
            body = await request.content.read(MAX_BODY + 1)
        except (ConnectionError, asyncio.IncompleteReadError):
            return _answer(Verdict(400, "the body could not be read"))
        if len(body) > MAX_BODY:
            return _answer(Verdict(413, f"the body is larger than {MAX_BODY} bytes"))
        ns, name = where
        try:
            source = await asyncio.to_thread(
                self.kube.request, "GET", object_path(API, "CatalogSource", ns, name)
            )
            secret = await asyncio.to_thread(self._secret, source)
        except ApiError as err:
            if err.status == 404:
                return _answer(Verdict(404, f"no CatalogSource {ns}/{name}"))
            log.warning("webhook %s/%s: cannot read the source: %s", ns, name, err)
            return _answer(Verdict(503, "the Kubernetes API does not answer; redeliver later"))
        spec = source.get("spec") or {}
        verdict = judge(request.headers, body, secret, spec.get("branch", "main"))
        if verdict.status == 202 and spec.get("suspend"):
            verdict = Verdict(503, "the CatalogSource is suspended (spec.suspend)")
        delivery = f"{ns}/{name}/{verdict.delivery}"
        if verdict.status == 202 and verdict.delivery and not self.deliveries.first_time(delivery):
            verdict = Verdict(200, f"duplicate delivery {verdict.delivery}; ignored")
        if verdict.status == 202 and verdict.revision:
            try:
                await asyncio.to_thread(self._record, ns, name, verdict)
            except ApiError as err:
                log.warning("webhook %s/%s: cannot record the push: %s", ns, name, err)
                return _answer(Verdict(503, "the Kubernetes API does not answer; redeliver"))
            if self.on_accept is not None:
                self.on_accept(ns, name)
        log.info("webhook %s/%s: %d %s", ns, name, verdict.status, verdict.reason)
        return _answer(verdict)


async def serve(receiver: Receiver, host: str, port: int) -> web.AppRunner:
    """Start answering on host:port; the caller cleans the returned runner up."""
    app = web.Application(client_max_size=MAX_BODY + 1)
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
