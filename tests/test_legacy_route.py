"""`POST|GET /{project}/{version}`: every body form the hosted API's users send, its query quirks, its errors."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import b64, encode, image_value, photo
from tests.test_api_detection import exif_rotated_jpeg, without_ids

URL = "/nudenet/1"


def infer_v2(client: httpx.Client, pixels: np.ndarray, **options: object) -> dict:
    body = {"model_id": "nudenet/1", "image": image_value(pixels), **options}
    return client.post("/infer/object_detection", json=body).json()


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return encode(photo("astronaut"))


@pytest.fixture(scope="module")
def expected(client: httpx.Client) -> list[dict]:
    return without_ids(infer_v2(client, photo("astronaut")))


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/x-www-form-urlencoded", "text/plain", "application/octet-stream"],
)
def test_base64_body_whatever_the_content_type(
    client: httpx.Client, jpeg: bytes, expected: list, content_type: str
) -> None:
    response = client.post(URL, content=b64(jpeg), headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"inference_id", "time", "image", "predictions"}
    assert without_ids(body) == expected


def test_base64_body_with_data_url_prefix_and_line_breaks(client: httpx.Client, jpeg: bytes, expected: list) -> None:
    text = "data:image/jpeg;base64," + base64.encodebytes(jpeg).decode()  # MIME style, 76-character lines
    response = client.post(URL, content=text, headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and without_ids(response.json()) == expected


def test_multipart_upload(client: httpx.Client, jpeg: bytes, expected: list) -> None:
    response = client.post(URL, files={"file": ("astronaut.jpg", jpeg, "image/jpeg")})
    assert response.status_code == 200, response.text
    assert without_ids(response.json()) == expected


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream", None])
def test_raw_image_bytes_are_accepted(client: httpx.Client, ext: str, content_type: str | None) -> None:
    encoded = encode(photo("astronaut"), ext)
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(URL, content=encoded, headers=headers)
    assert response.status_code == 200, response.text
    same_bytes = {"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(encoded)}}
    assert without_ids(response.json()) == without_ids(client.post("/infer/object_detection", json=same_bytes).json())


def test_image_url_in_the_query(client: httpx.Client, file_server: tuple, jpeg: bytes, expected: list) -> None:
    base_url, root = file_server
    (root / "legacy.jpg").write_bytes(jpeg)
    post = client.post(URL, params={"image": f"{base_url}/legacy.jpg"})
    get = client.get(URL, params={"image": f"{base_url}/legacy.jpg"})
    assert post.status_code == 200 and get.status_code == 200, post.text
    assert without_ids(post.json()) == expected == without_ids(get.json())


def test_percent_confidence_and_overlap_and_the_confidence_floor(client: httpx.Client, jpeg: bytes) -> None:
    def legacy(**query: object) -> list:
        response = client.post(URL, params=query, content=b64(jpeg), headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        return without_ids(response.json())

    astronaut = photo("astronaut")
    assert legacy(confidence=50) == legacy(confidence=0.5) == without_ids(infer_v2(client, astronaut, confidence=0.5))
    assert legacy(confidence=0.05, overlap=30) == without_ids(
        infer_v2(client, astronaut, confidence=0.05, iou_threshold=0.3)
    )
    floored = legacy(confidence=0.001)
    assert floored == without_ids(infer_v2(client, astronaut, confidence=0.01))
    assert floored != without_ids(infer_v2(client, astronaut, confidence=0.001))
    assert len(legacy(confidence=0.05, max_detections=2)) == 2
    assert legacy(confidence="default") == legacy()


def test_format_image_returns_an_annotated_jpeg(client: httpx.Client, jpeg: bytes) -> None:
    response = client.post(
        URL, params={"format": "image", "labels": "true", "stroke": 3}, content=b64(jpeg),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original.astype(int)).max() > 100  # something was drawn


def test_format_image_and_json_adds_the_visualization(client: httpx.Client, jpeg: bytes, expected: list) -> None:
    response = client.post(URL, params={"format": "image_and_json"}, content=b64(jpeg),
                           headers={"Content-Type": "application/json"})
    body = response.json()
    assert list(body)[0] == "visualization" and without_ids(body) == expected
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(body["visualization"]), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (512, 512, 3)


@pytest.mark.parametrize(
    ("name", "ext", "size"),
    [("camera", ".png", (512, 512)), ("logo", ".png", (500, 500)), ("coffee", ".webp", (600, 400))],
)
def test_grayscale_rgba_webp(client: httpx.Client, name: str, ext: str, size: tuple) -> None:
    response = client.post(URL, content=encode(photo(name), ext))
    assert response.status_code == 200 and response.json()["image"] == {"width": size[0], "height": size[1]}


def test_exif_orientation(client: httpx.Client) -> None:
    jpeg = exif_rotated_jpeg()
    rotated = client.post(URL, content=jpeg, params={"confidence": 0.05})
    assert rotated.json()["image"] == {"width": 400, "height": 600}
    as_stored = client.post(URL, content=jpeg, params={"confidence": 0.05, "disable_preproc_auto_orient": "true"})
    assert as_stored.json()["image"] == {"width": 600, "height": 400}
    v2 = {"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(jpeg)}, "confidence": 0.05}
    assert without_ids(rotated.json()) == without_ids(client.post("/infer/object_detection", json=v2).json())


def test_unknown_model_comes_before_image_errors(client: httpx.Client) -> None:
    response = client.post("/no-such/9", content=b"not base64 !!!", headers={"Content-Type": "text/plain"})
    assert response.status_code == 404 and "no-such/9" in response.json()["message"]


@pytest.mark.parametrize(
    ("kwargs", "status", "text"),
    [
        ({"content": b""}, 400, "Content-Type header not provided"),
        ({"content": b"", "headers": {"Content-Type": "application/json"}}, 400, "Empty image payload"),
        ({"content": b"\x00\x01\x02garbage\xff" * 50, "headers": {"Content-Type": "application/octet-stream"}},
         400, "Data is not an image"),
        ({"content": b"@@@@", "headers": {"Content-Type": "text/plain"}}, 400, "Malformed base64"),
        ({"files": {"picture": ("a.jpg", b"x", "image/jpeg")}}, 400, "part named 'file'"),
        ({"data": {"file": "not a file"}, "files": {"other": ("a", b"x")}}, 400, "part 'file' is not a file"),
        ({"content": b"abc", "params": {"image_type": "pickle"}, "headers": {"Content-Type": "text/plain"}},
         400, "not recognised image type"),
        ({"content": b"abc", "params": {"confidence": "high"}, "headers": {"Content-Type": "text/plain"}}, 422, "confidence"),
        ({"content": b"abc", "params": {"max_detections": "many"}, "headers": {"Content-Type": "text/plain"}},
         422, "max_detections"),
    ],
)
def test_errors(client: httpx.Client, kwargs: dict, status: int, text: str) -> None:
    response = client.post(URL, **kwargs)
    assert response.status_code == status, response.text
    assert text in response.text


def test_a_path_that_is_not_a_model_id_is_400(client: httpx.Client) -> None:
    response = client.post("/bad id/1", content=b"x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400 and "Invalid Model ID" in response.json()["message"]


def test_other_routes_are_not_shadowed(client: httpx.Client) -> None:
    assert client.get("/docs").status_code == 200
    assert client.post("/infer/object_detection", json={}).status_code == 422  # still the JSON route


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/infer/object_detection", "POST"), ("GET", "/model/add", "POST"), ("POST", "/model/registry", "GET")],
)
def test_a_wrong_method_on_a_two_segment_route_is_405(client: httpx.Client, method: str, path: str,
                                                      allowed: str) -> None:  # fmt: skip
    """The legacy `/{project}/{version}` route takes GET and POST, but never answers for the server's own routes."""
    response = client.request(method, path)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    assert response.json()["message"] == f"{method} is not allowed on {path}; it takes {allowed}."
