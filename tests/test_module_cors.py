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
