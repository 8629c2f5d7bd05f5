"""The CORS decisions of `deepmarket module serve --cors-origin` (pure functions)."""

import pytest

from deepmarket.modules import cors

PAGE = "http://127.0.0.1:8000"


def test_origins_are_validated():
    assert cors.parse_origins([PAGE + "/", "*"]) == (PAGE, "*")
    with pytest.raises(ValueError, match=r"--cors-origin 'example\.org'"):
        cors.parse_origins(["example.org"])
    with pytest.raises(ValueError, match="scheme://host"):
        cors.parse_origins(["http://example.org/path"])


def test_listed_origin_is_echoed_and_others_refused():
    assert cors.allowed_origin(PAGE, (PAGE,)) == PAGE
    assert cors.allowed_origin("http://evil.example", (PAGE,)) is None
    assert cors.allowed_origin(None, (PAGE,)) is None
    assert cors.allowed_origin("http://any.example", ("*",)) == "*"


def test_preflight_allows_the_requested_headers():
    headers = cors.preflight_headers(PAGE, (PAGE,), "accept, content-type")
    assert headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "accept, content-type"
    assert cors.preflight_headers("http://evil.example", (PAGE,), None) is None


def test_answers_vary_on_origin_and_hop_by_hop_headers_stay_behind():
    assert cors.response_headers(PAGE, (PAGE,)) == {
        "Access-Control-Allow-Origin": PAGE,
        "Vary": "Origin",
    }
    assert cors.response_headers("http://evil.example", (PAGE,)) == {"Vary": "Origin"}
    kept = cors.forwardable({"Host": "x", "Connection": "close", "Accept": "image/png"})
    assert kept == {"Accept": "image/png"}


def test_path_prefix_is_validated_and_normalised():
    assert cors.parse_prefix("") == ""
    assert cors.parse_prefix("/digits-classifier/") == "/digits-classifier"
    assert cors.parse_prefix("models/digits") == "/models/digits"
    with pytest.raises(ValueError, match=r"--path-prefix '/a b'"):
        cors.parse_prefix("/a b")
    with pytest.raises(ValueError, match="--path-prefix"):
        cors.parse_prefix("/a//b")


def test_prefix_is_stripped_and_requests_outside_it_are_refused():
    prefix = "/digits-classifier"
    assert cors.strip_prefix("/digits-classifier/v2/models/", prefix) == "/v2/models/"
    assert cors.strip_prefix("/digits-classifier", prefix) == "/"
    assert cors.strip_prefix("/digits-classifier-2/v2/", prefix) is None
    assert cors.strip_prefix("/v2/", prefix) is None
    assert cors.strip_prefix("/v2/", "") == "/v2/"


def test_redirects_stay_under_the_prefix():
    assert cors.prefixed_location("/v2/", "/m") == "/m/v2/"
    assert cors.prefixed_location("http://other/x", "/m") == "http://other/x"
    assert cors.prefixed_location("//cdn/x", "/m") == "//cdn/x"
    assert cors.prefixed_location("/v2/", "") == "/v2/"


def test_proxy_serves_only_under_its_prefix_and_keeps_redirects_there():
    """The aiohttp shell around the decisions, against a tiny backend (no deepaas needed)."""
    import asyncio

    import aiohttp
    from aiohttp import web

    async def scenario() -> dict[str, tuple[int, str, str | None, str | None]]:
        backend = web.Application()

        async def v2(request: web.Request) -> web.Response:
            return web.json_response({"q": request.query_string})

        backend.router.add_get("/v2/", v2)

        async def ui(_: web.Request) -> web.Response:
            raise web.HTTPFound("/api")  # what deepaas-run's /ui does

        backend.router.add_get("/ui", ui)
        back = web.AppRunner(backend)
        await back.setup()
        await web.TCPSite(back, "127.0.0.1", 0).start()
        back_port = back.addresses[0][1]
        proxy = web.AppRunner(
            cors.proxy_app(f"http://127.0.0.1:{back_port}", (PAGE,), 1024, "/digits")
        )
        await proxy.setup()
        await web.TCPSite(proxy, "127.0.0.1", 0).start()
        front = f"http://127.0.0.1:{proxy.addresses[0][1]}"
        seen = {}
        try:
            async with aiohttp.ClientSession() as session:
                for path in ("/digits/v2/?x=1", "/v2/", "/digits/ui"):
                    async with session.get(
                        front + path, headers={"Origin": PAGE}, allow_redirects=False
                    ) as answer:
                        seen[path] = (
                            answer.status,
                            await answer.text(),
                            answer.headers.get("Location"),
                            answer.headers.get("Access-Control-Allow-Origin"),
                        )
        finally:
            await proxy.cleanup()
            await back.cleanup()
        return seen

    seen = asyncio.run(scenario())
    status, body, _, allow = seen["/digits/v2/?x=1"]
    assert (status, allow) == (200, PAGE) and '"q": "x=1"' in body
    status, body, _, allow = seen["/v2/"]
    assert (status, allow) == (404, PAGE) and "under /digits/ only" in body
    assert seen["/digits/ui"][0] == 302 and seen["/digits/ui"][2] == "/digits/api"
