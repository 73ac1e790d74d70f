"""A mistyped model id is a 404 that says the model is not here and names the closest local ids, on every route
and client, whether the weights API is unreachable or not configured at all; a 503 only for a model the weights
API is known to have (a half-finished download, or a description answered before the weights failed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, b64, encode, image_value, photo
from tests.test_cli_server import visionserve
from tests.test_official_sdk import official_client
from visionserve.sdk import InferenceHTTPClient
from visionserve.sdk.errors import HTTPCallErrorError
from visionserve.server_process import free_port

ASTRONAUT = encode(photo("astronaut"))


@pytest.fixture(scope="module")
def unreachable_api() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused


@pytest.fixture(scope="module")
def offline_server(tmp_path_factory: pytest.TempPathFactory, unreachable_api: str) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("offline-home"), {"VISIONSERVE_WEIGHTS_API": unreachable_api}).start()
    yield running
    running.stop()


def assert_not_here(response: httpx.Response, typo: str, suggestion: str = "nudenet/1") -> str:
    assert response.status_code == 404, response.text
    assert "Retry-After" not in response.headers
    body = response.json()
    message = body.get("message") or body["error"]  # /v2 answers errors in the protocol's shape
    assert typo in message and f"did you mean {suggestion}?" in message.lower()
    assert "visionserve models add" in message
    return message


def requests_for(typo: str) -> list[tuple[str, dict]]:
    """Every route that names a model, as (path, httpx keyword arguments)."""
    project, _, version = typo.partition("/")
    routes = [
        ("/infer/object_detection", {"json": {"model_id": typo, "image": image_value(photo("astronaut"))}}),
        ("/model/add", {"json": {"model_id": typo}}),
    ]
    if version:
        routes.append((f"/{project}/{version}", {"content": b64(ASTRONAUT)}))
    else:  # /v2 without model_version: the name is the whole id
        tensor = {"name": "images", "shape": [1], "datatype": "BYTES", "data": [b64(ASTRONAUT)]}
        routes.append((f"/v2/models/{typo}/infer", {"json": {"inputs": [tensor]}}))
    return routes


@pytest.mark.parametrize("typo", ["nudenet/2", "nudnet/1", "nudenet", "nudnet"])
def test_a_typo_with_the_weights_api_unreachable_is_a_404_with_suggestions(
    offline_server: Server, unreachable_api: str, typo: str
) -> None:
    with offline_server.client() as http:
        for path, request in requests_for(typo):
            started = time.monotonic()
            message = assert_not_here(http.post(path, **request), typo)
            assert time.monotonic() - started < 5, path  # no retries, no backoff
            assert f"the weights API at {unreachable_api} could not be reached" in message, path


def test_without_a_weights_api_the_404_suggests_too(client: httpx.Client) -> None:
    """The session server runs with VISIONSERVE_WEIGHTS_API empty."""
    body = {"model_id": "nudnet/1", "image": image_value(photo("astronaut"))}
    message = assert_not_here(client.post("/infer/object_detection", json=body), "nudnet/1")
    assert "VISIONSERVE_WEIGHTS_API" in message


def test_a_name_far_from_every_local_id_gets_no_guess(offline_server: Server) -> None:
    with offline_server.client() as http:
        response = http.post("/model/add", json={"model_id": "zzzz-qqqq/77"})
    assert response.status_code == 404 and "did you mean" not in response.json()["message"].lower()


def test_our_sdk_gets_the_404_at_once(offline_server: Server) -> None:
    client = InferenceHTTPClient(offline_server.url)
    started = time.monotonic()
    with pytest.raises(HTTPCallErrorError) as error:
        client.infer(photo("astronaut"), model_id="nudnet/1")
    assert error.value.status_code == 404 and "did you mean nudenet/1?" in error.value.api_message.lower()
    assert time.monotonic() - started < 5  # a 503 would have been retried with backoff


def test_the_cli_says_what_is_wrong(offline_server: Server, tmp_path: Path) -> None:
    image = tmp_path / "astronaut.jpg"
    image.write_bytes(ASTRONAUT)
    ran = visionserve("infer", str(image), "--model", "nudnet/1", "--api-url", offline_server.url, env={})
    assert ran.returncode == 1
    said = " ".join((ran.stdout + ran.stderr).split())
    assert "did you mean nudenet/1?" in said.lower() and "could not be reached" in said


@pytest.mark.parametrize("flags", [(), ("--v0",)])
def test_the_official_sdk_gets_the_404(offline_server: Server, tmp_path: Path, flags: tuple[str, ...]) -> None:
    image = tmp_path / "astronaut.jpg"
    image.write_bytes(ASTRONAUT)
    output = official_client(offline_server, "nudnet/1", [image], *flags)
    assert output["error"]["status_code"] == 404
    assert "did you mean nudenet/1?" in output["error"]["message"].lower()
