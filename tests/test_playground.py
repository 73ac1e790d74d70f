"""The playground's and the documentation's pages over plain HTTP: the headers that keep a browser from framing
them, sniffing types or running anything foreign, and the icon a browser asks for. (tests/test_browser.py checks
in a real browser that the pages work under those policies.)"""

from __future__ import annotations

import httpx
import pytest

PAGES = ["/", "/docs", "/redoc"]


@pytest.mark.parametrize("page", PAGES)
def test_pages_forbid_framing_sniffing_and_foreign_scripts(client: httpx.Client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    policy = dict(
        directive.strip().split(" ", 1) for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy["script-src"] and "unsafe-eval" not in policy["script-src"]
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/playground/playground.js"), ("POST", "/infer/object_detection"), ("GET", "/nope")],
)
def test_every_answer_says_nosniff(client: httpx.Client, method: str, path: str) -> None:
    assert client.request(method, path).headers["x-content-type-options"] == "nosniff"


def test_the_favicon_is_a_small_icon_shipped_in_the_package(client: httpx.Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert response.content.startswith(b"\x00\x00\x01\x00") and len(response.content) < 8_000


def test_with_api_keys_the_favicon_is_open(start_server) -> None:
    with start_server({"VISIONSERVE_API_KEYS": "sesame"}).client() as client:
        assert client.get("/favicon.ico").status_code == 200
