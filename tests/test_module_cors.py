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
