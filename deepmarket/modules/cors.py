"""CORS for a local DEEPaaS server, so a web page on another origin can call it.

deepaas-run has no CORS option, and in a cluster CORS belongs to the ingress, not the module.
Locally, `deepmarket module serve --cors-origin` therefore puts this small reverse proxy in
front of an unmodified `deepaas-run`: the module runs exactly as it will in production and
the proxy answers preflights and adds the CORS headers. The header decisions are pure
functions; `proxy_app` is the thin aiohttp shell around them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

ANY = "*"
ALLOWED_METHODS = "GET, POST, DELETE, OPTIONS"
PREFLIGHT_MAX_AGE = "600"
# Headers that describe one connection, never forwarded by a proxy (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~\-]+)+$")


def parse_origins(values: Iterable[str]) -> tuple[str, ...]:
    """Validate `--cors-origin` values: `scheme://host[:port]` (no path), or `*`."""
    origins = []
    for value in values:
        origin = value.strip().rstrip("/")
        if origin != ANY and not _ORIGIN.match(origin):
            raise ValueError(
                f"--cors-origin {value!r}: expected scheme://host[:port] such as "
                "http://127.0.0.1:8000, or *"
            )
        origins.append(origin)
    return tuple(origins)


def parse_prefix(value: str) -> str:
    """Validate `--path-prefix`: "" (none) or `/segment[/segment...]`, kept without a final "/".

    The marketplace's try-it scheme puts a module's API at `<base>/<module-id>/`; a prefix lets
    one local server answer at that path, as an ingress would."""
    prefix = value.strip().rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    if prefix and not _PREFIX.match(prefix):
        raise ValueError(
            f"--path-prefix {value!r}: expected a path such as /digits-classifier "
            "(letters, digits, '.', '_', '~', '-' between slashes)"
        )
    return prefix


def strip_prefix(path: str, prefix: str) -> str | None:
    """The backend path for a request path under `prefix`, or None when it lies outside."""
    if not prefix:
        return path
    if path == prefix:
        return "/"
    if path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return None


def prefixed_location(location: str, prefix: str) -> str:
    """A backend redirect to an absolute path must stay under the prefix the client used."""
    if prefix and location.startswith("/") and not location.startswith("//"):
        return prefix + location
    return location


def allowed_origin(origin: str | None, allowed: tuple[str, ...]) -> str | None:
    """The Access-Control-Allow-Origin value for a request from `origin`, or None."""
    if not origin:
        return None
    if origin in allowed:
        return origin
    return ANY if ANY in allowed else None


def preflight_headers(
    origin: str | None, allowed: tuple[str, ...], request_headers: str | None
) -> dict[str, str] | None:
    """Answer to an OPTIONS preflight, or None when the origin is not allowed."""
    allow = allowed_origin(origin, allowed)
    if allow is None:
        return None
    headers = {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Allow-Methods": ALLOWED_METHODS,
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        "Vary": "Origin, Access-Control-Request-Headers",
    }
    if request_headers:
        # The DEEPaaS API takes its arguments in headers (Accept) and form fields; let the
        # page send whatever headers it asked for rather than guessing a list.
        headers["Access-Control-Allow-Headers"] = request_headers
    return headers


def response_headers(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """CORS headers added to a proxied answer (none for a foreign origin: the browser blocks)."""
    allow = allowed_origin(origin, allowed)
    if allow is None:
        return {"Vary": "Origin"}
    return {"Access-Control-Allow-Origin": allow, "Vary": "Origin"}


def forwardable(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


def proxy_app(  # noqa: ANN201
    backend: str, allowed: tuple[str, ...], max_body: int, prefix: str = ""
):
    """An aiohttp application forwarding every request to `backend` (http://host:port);
    with `prefix`, only requests under it, with the prefix taken off."""
    import aiohttp
    from aiohttp import web

    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def start_session(app: web.Application) -> None:
        app[session_key] = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
        )

    async def close_session(app: web.Application) -> None:
        await app[session_key].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            headers = preflight_headers(
                origin, allowed, request.headers.get("Access-Control-Request-Headers")
            )
            if headers is None:
                return web.Response(
                    status=403, text=f"origin {origin} is not allowed by --cors-origin\n"
                )
            return web.Response(status=204, headers=headers)
        path = strip_prefix(request.rel_url.raw_path, prefix)
        if path is None:
            return web.Response(
                status=404,
                text=f"not found: this server answers under {prefix}/ only\n",
                headers=response_headers(origin, allowed),
            )
        query = request.rel_url.raw_query_string
        body = await request.read()
        try:
            async with request.app[session_key].request(
                request.method,
                backend + path + (f"?{query}" if query else ""),
                headers=forwardable(request.headers),
                data=body or None,
                allow_redirects=False,
            ) as answer:
                payload = await answer.read()
                headers = forwardable(answer.headers)
                status = answer.status
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"deepaas-run did not answer: {exc}\n")
        headers.update(response_headers(origin, allowed))
        if "Location" in headers:
            headers["Location"] = prefixed_location(headers["Location"], prefix)
        return web.Response(status=status, body=payload, headers=headers)

    app = web.Application(client_max_size=max_body)
    app.on_startup.append(start_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
