"""Bad input gets a clear 4xx with a JSON message, and the server keeps serving."""

from __future__ import annotations

import struct
import zlib

import httpx
import pytest

from tests.conftest import b64, image_value, photo

CAUSE = "Could not load input image. Cause: "


def post(client: httpx.Client, body: object) -> httpx.Response:
    return client.post("/infer/object_detection", json=body)


def test_unknown_model_is_404(client: httpx.Client) -> None:
    response = post(client, {"model_id": "no-such-project/4", "image": image_value(photo("astronaut"))})
    assert response.status_code == 404
    assert "no-such-project/4" in response.json()["message"]


@pytest.mark.parametrize("model_id", [None, "", "../../etc/passwd", "a/b/c", "x y/1", 5])
def test_malformed_model_id_is_400(client: httpx.Client, model_id: object) -> None:
    response = post(client, {"model_id": model_id, "image": image_value(photo("astronaut"))})
    if isinstance(model_id, int):  # not a string at all: a schema error
        assert response.status_code == 422
        return
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid Model ID sent in request")


@pytest.mark.parametrize(
    ("image", "cause"),
    [
        ({"type": "base64", "value": "abc"}, "Malformed base64 input image."),
        ({"type": "base64", "value": ""}, "Empty image payload."),
        ({"type": "base64", "value": b64(b"definitely not an image")}, "Data is not an image"),
        ({"type": "base64", "value": 12345}, "Malformed base64 input image"),
        ({"type": "base64", "value": None}, "Malformed base64 input image"),
        ({"type": "file", "value": "/etc/passwd"}, "not recognised image type 'file'"),
        ({"type": "url", "value": "file:///etc/passwd"}, "Provided image URL is invalid"),
        ({"type": "url", "value": "ftp://example.com/a.jpg"}, "Provided image URL is invalid"),
        ({"type": "url", "value": 7}, "Provided image URL is invalid"),
    ],
)
def test_unreadable_images_are_400_with_the_cause(client: httpx.Client, image: dict, cause: str) -> None:
    response = post(client, {"model_id": "nudenet/1", "image": image})
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith(CAUSE) and cause in message


def test_url_errors_name_the_cause(client: httpx.Client, file_server: tuple) -> None:
    base_url, root = file_server
    (root / "notes.txt").write_text("hello")
    missing = post(client, {"model_id": "nudenet/1", "image": {"type": "url", "value": f"{base_url}/missing.jpg"}})
    assert missing.status_code == 400 and "HTTP 404" in missing.json()["message"]
    text = post(client, {"model_id": "nudenet/1", "image": {"type": "url", "value": f"{base_url}/notes.txt"}})
    assert text.status_code == 400 and "Data is not an image" in text.json()["message"]
    refused = post(client, {"model_id": "nudenet/1", "image": {"type": "url", "value": "http://127.0.0.1:1/a.jpg"}})
    assert refused.status_code == 400 and "could not be loaded" in refused.json()["message"]


def test_one_bad_image_fails_the_whole_batch(client: httpx.Client) -> None:
    good = image_value(photo("astronaut"))
    response = post(client, {"model_id": "nudenet/1", "image": [good, {"type": "base64", "value": "@@"}]})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"model_id": "nudenet/1"}, ["body", "image"]),
        ({"image": {"type": "base64", "value": "x"}}, ["body", "model_id"]),
        ({"model_id": "nudenet/1", "image": "bare string"}, ["body", "image"]),
        ({"model_id": "nudenet/1", "image": {"value": "x"}}, ["body", "image"]),
        ({"model_id": "nudenet/1", "image": {"type": "base64", "value": "x"}, "confidence": "high"}, ["body", "confidence"]),
        ({"model_id": "nudenet/1", "image": {"type": "base64", "value": "x"}, "max_detections": -1}, ["body", "max_detections"]),
    ],
)
def test_schema_errors_are_422_like_fastapi(client: httpx.Client, body: dict, location: list) -> None:
    response = post(client, body)
    assert response.status_code == 422
    assert any(error["loc"][: len(location)] == location for error in response.json()["detail"])


def test_non_json_body_is_422(client: httpx.Client) -> None:
    response = client.post("/infer/object_detection", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_server_still_serves_after_bad_requests(client: httpx.Client) -> None:
    for _ in range(3):
        post(client, {"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(b"\x00" * 1000)}})
    response = post(client, {"model_id": "nudenet/1", "image": image_value(photo("astronaut"))})
    assert response.status_code == 200 and response.json()["predictions"]


def test_too_many_images_in_one_request(start_server) -> None:
    server = start_server({"VISIONSERVE_MAX_BATCH_IMAGES": "2"})
    with server.client() as client:
        image = image_value(photo("astronaut"))
        assert post(client, {"model_id": "nudenet/1", "image": [image, image]}).status_code == 200
        response = post(client, {"model_id": "nudenet/1", "image": [image] * 3})
        assert response.status_code == 400 and "limit is 2" in response.json()["message"]


def png_bomb(width: int, height: int) -> bytes:
    """A valid grayscale PNG of zeros: tiny on the wire, width x height bytes once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(client: httpx.Client) -> None:
    bomb = png_bomb(12_000, 12_000)  # 144 megapixels, above the default 50 megapixel limit
    assert len(bomb) < 300_000
    response = post(client, {"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(bomb)}})
    assert response.status_code == 400
    assert "12000x12000 pixels, more than the limit of 50000000" in response.json()["message"]


def test_pixel_limit_is_configurable(start_server) -> None:
    server = start_server({"VISIONSERVE_MAX_IMAGE_PIXELS": "200000"})
    with server.client() as client:
        big = image_value(photo("astronaut"))  # 512 x 512 = 262144 pixels
        response = post(client, {"model_id": "nudenet/1", "image": big})
        assert response.status_code == 400 and "more than the limit of 200000 pixels" in response.json()["message"]
        small = image_value(photo("coins"))  # 384 x 303 = 116352 pixels
        assert post(client, {"model_id": "nudenet/1", "image": small}).status_code == 200
