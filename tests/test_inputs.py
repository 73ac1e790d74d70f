"""Image inputs on `/infer/*`, safe by default: numpy behind a switch and a restricted unpickler, URL downloads
that cannot reach private networks, and limits on everything a caller controls."""

from __future__ import annotations

import base64
import io
import os
import pickle
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import b64, encode, image_value, photo
from tests.test_api_detection import without_ids


def detect(client: httpx.Client, image: object, **options: object) -> httpx.Response:
    return client.post("/infer/object_detection", json={"model_id": "nudenet/1", "image": image, **options})


def numpy_value(array: np.ndarray, as_npy: bool = False) -> dict:
    if as_npy:
        buffer = io.BytesIO()
        np.save(buffer, array)
        payload = buffer.getvalue()
    else:
        payload = pickle.dumps(array)
    return {"type": "numpy", "value": b64(payload)}


class Exploit:
    """Unpickling this runs `touch <marker>`, the classic pickle remote-code-execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def numpy_server(tmp_path_factory: pytest.TempPathFactory):
    from tests.conftest import Server

    running = Server(tmp_path_factory.mktemp("numpy-home"), {"VISIONSERVE_ALLOW_NUMPY_INPUT": "1",
                                                             "VISIONSERVE_URL_ALLOW_HOSTS": "127.0.0.1"}).start()
    yield running
    running.stop()


def test_numpy_is_off_by_default_and_says_how_to_enable_it(client: httpx.Client) -> None:
    response = detect(client, numpy_value(photo("astronaut")))
    assert response.status_code == 400
    assert "VISIONSERVE_ALLOW_NUMPY_INPUT=1" in response.json()["message"]


def test_numpy_arrays_when_enabled(numpy_server) -> None:
    pixels = photo("astronaut")
    with numpy_server.client() as client:
        reference = without_ids(detect(client, image_value(pixels, ".png")).json())
        assert without_ids(detect(client, numpy_value(pixels)).json()) == reference
        assert without_ids(detect(client, numpy_value(pixels, as_npy=True)).json()) == reference
        gray = detect(client, numpy_value(photo("camera")))
        assert gray.status_code == 200 and gray.json()["image"] == {"width": 512, "height": 512}
        legacy = client.post("/nudenet/1", params={"image_type": "numpy"}, content=pickle.dumps(pixels),
                             headers={"Content-Type": "application/octet-stream"})
        assert legacy.status_code == 200 and without_ids(legacy.json()) == reference


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((10, 10, 3), np.float32), "expected dtype uint8"),
        (np.zeros((2, 10, 10, 3), np.uint8), "expected 2 or 3 dimensions"),
        (np.zeros((10, 10, 4), np.uint8), "expected 1 or 3 channels"),
        (np.array(["a", "b"], dtype=object), "expected dtype uint8"),
    ],
)
def test_arrays_that_are_not_images_are_refused(numpy_server, array: np.ndarray, message: str) -> None:
    with numpy_server.client() as client:
        response = detect(client, {"type": "numpy", "value": b64(pickle.dumps(array))})
    assert response.status_code == 400 and message in response.json()["message"]


def test_a_malicious_pickle_never_executes(numpy_server, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = [
        pickle.dumps(Exploit(marker)),
        pickle.dumps([np.zeros((2, 2), np.uint8), Exploit(marker)]),
        pickle.dumps(Exploit(marker), protocol=0),
    ]
    with numpy_server.client() as client:
        for payload in payloads:
            response = detect(client, {"type": "numpy", "value": b64(payload)})
            assert response.status_code == 400 and "deserialize" in response.json()["message"]
            legacy = client.post("/nudenet/1", params={"image_type": "numpy"}, content=payload,
                                 headers={"Content-Type": "application/octet-stream"})
            assert legacy.status_code == 400
    time.sleep(0.5)
    assert not marker.exists()


def test_a_batch_may_mix_input_types(numpy_server, file_server: tuple) -> None:
    base_url, root = file_server
    (root / "mix.jpg").write_bytes(encode(photo("chelsea")))
    images = [
        {"type": "url", "value": f"{base_url}/mix.jpg"},
        image_value(photo("astronaut")),
        numpy_value(photo("coffee")),
        {"type": "base64", "value": "data:image/png;base64," + b64(encode(photo("rocket"), ".png"))},
    ]
    with numpy_server.client() as client:
        results = detect(client, images).json()
    assert [r["image"] for r in results] == [
        {"width": 451, "height": 300}, {"width": 512, "height": 512},
        {"width": 600, "height": 400}, {"width": 640, "height": 427},
    ]


def test_visualize_predictions_adds_a_base64_jpeg(client: httpx.Client) -> None:
    body = detect(client, image_value(photo("astronaut")), visualize_predictions=True, visualization_labels=True).json()
    assert list(body)[0] == "visualization"
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(body["visualization"]), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (512, 512, 3)
    batch = detect(client, [image_value(photo("astronaut")), image_value(photo("coffee"))],
                   visualize_predictions=True).json()
    sizes = [cv2.imdecode(np.frombuffer(base64.b64decode(r["visualization"]), np.uint8), 1).shape for r in batch]
    assert sizes == [(512, 512, 3), (400, 600, 3)]
    assert "visualization" not in detect(client, image_value(photo("astronaut"))).json()


# --- URLs: no SSRF, deadlines, size caps ---


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/ssrf.jpg",
        "http://localhost:{port}/ssrf.jpg",
        "http://[::1]:{port}/ssrf.jpg",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.1/a.jpg",
        "http://192.168.1.1/a.jpg",
        "http://0.0.0.0:{port}/ssrf.jpg",
    ],
)
def test_urls_to_private_destinations_are_refused_by_default(start_server, file_server: tuple, url: str) -> None:
    base_url, root = file_server
    (root / "ssrf.jpg").write_bytes(encode(photo("astronaut")))
    port = base_url.rsplit(":", 1)[1]
    server = start_server()  # no allow-list
    with server.client() as client:
        started = time.monotonic()
        response = detect(client, {"type": "url", "value": url.format(port=port)})
    assert response.status_code == 400
    assert "not allowed" in response.json()["message"] or "cannot be resolved" in response.json()["message"]
    assert time.monotonic() - started < 5


def test_redirects_are_checked_again(client: httpx.Client, file_server: tuple) -> None:
    base_url, root = file_server
    (root / "target.jpg").write_bytes(encode(photo("astronaut")))
    port = base_url.rsplit(":", 1)[1]
    allowed = detect(client, {"type": "url", "value": f"{base_url}/redirect?to={base_url}/target.jpg"})
    assert allowed.status_code == 200, allowed.text
    sneaky = f"{base_url}/redirect?to=http://localhost:{port}/target.jpg"  # allowed host → private host
    refused = detect(client, {"type": "url", "value": sneaky})
    assert refused.status_code == 400 and "not allowed" in refused.json()["message"]
    metadata = detect(client, {"type": "url", "value": f"{base_url}/redirect?to=http://169.254.169.254/"})
    assert metadata.status_code == 400 and "not allowed" in metadata.json()["message"]


def test_url_download_deadline_and_size_cap(start_server, file_server: tuple) -> None:
    base_url, root = file_server
    (root / "big.png").write_bytes(encode(photo("retina"), ".png"))
    (root / "small.jpg").write_bytes(encode(photo("astronaut")))
    server = start_server({"VISIONSERVE_URL_ALLOW_HOSTS": "127.0.0.1", "VISIONSERVE_URL_TIMEOUT_S": "1",
                           "VISIONSERVE_URL_MAX_BYTES": "200000"})
    with server.client() as client:
        started = time.monotonic()
        slow = detect(client, {"type": "url", "value": f"{base_url}/slow/small.jpg?seconds=4"})
        assert slow.status_code == 400 and "1 s" in slow.json()["message"]
        assert time.monotonic() - started < 3.5
        big = detect(client, {"type": "url", "value": f"{base_url}/big.png"})
        assert big.status_code == 400 and "larger than 200000 bytes" in big.json()["message"]
        assert detect(client, {"type": "url", "value": f"{base_url}/small.jpg"}).status_code == 200


def test_url_input_can_be_switched_off(start_server, file_server: tuple) -> None:
    base_url, root = file_server
    (root / "off.jpg").write_bytes(encode(photo("astronaut")))
    server = start_server({"VISIONSERVE_ALLOW_URL_INPUT": "0", "VISIONSERVE_URL_ALLOW_HOSTS": "127.0.0.1"})
    with server.client() as client:
        response = detect(client, {"type": "url", "value": f"{base_url}/off.jpg"})
    assert response.status_code == 400 and "disabled" in response.json()["message"]


# --- request body size ---


def test_request_body_limit(start_server) -> None:
    server = start_server({"VISIONSERVE_MAX_BODY_BYTES": "150000"})
    small = image_value(photo("coins"))  # ~40 KB of base64
    big = image_value(photo("retina"))  # ~400 KB of base64
    with server.client() as client:
        assert detect(client, small).status_code == 200
        declared = detect(client, big)
        assert declared.status_code == 413 and "150000 bytes" in declared.json()["message"]

        def chunks():  # no Content-Length: the limit must hold on the bytes actually received
            body = httpx.Request("POST", "/", json={"model_id": "nudenet/1", "image": big}).read()
            for start in range(0, len(body), 16384):
                yield body[start : start + 16384]

        streamed = client.post("/infer/object_detection", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413 and "150000 bytes" in streamed.json()["message"]
        legacy = client.post("/nudenet/1", content=encode(photo("retina"), ".png"))
        assert legacy.status_code == 413
        assert detect(client, small).status_code == 200  # still serving
