"""`POST /infer/object_detection` against a real server, with real photos and the embedded model."""

from __future__ import annotations

import io
import uuid
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import b64, encode, image_value, photo

PREDICTION_KEYS = {"x", "y", "width", "height", "confidence", "class", "class_id", "detection_id"}


def detect(client: httpx.Client, image: object, **options: object) -> httpx.Response:
    return client.post("/infer/object_detection", json={"model_id": "nudenet/1", "image": image, **options})


def without_ids(result: dict) -> list[dict]:
    return [{k: v for k, v in p.items() if k != "detection_id"} for p in result["predictions"]]


def test_finds_the_astronauts_face_with_the_reference_json_shape(client: httpx.Client) -> None:
    response = detect(client, image_value(photo("astronaut")))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"inference_id", "time", "image", "predictions"}
    uuid.UUID(body["inference_id"])
    assert isinstance(body["time"], float) and 0 < body["time"] < 30
    assert body["image"] == {"width": 512, "height": 512}
    faces = [p for p in body["predictions"] if p["class"] == "FACE_FEMALE"]
    assert faces and faces[0]["confidence"] > 0.5 and faces[0]["class_id"] == 1
    x, y = faces[0]["x"], faces[0]["y"]
    assert 180 < x < 270 and 90 < y < 180  # her face, upper middle of the photo
    for prediction in body["predictions"]:
        assert set(prediction) == PREDICTION_KEYS
        for key in ("x", "y", "width", "height", "confidence"):
            assert isinstance(prediction[key], float)
        assert isinstance(prediction["class_id"], int)
        uuid.UUID(prediction["detection_id"])
        # corners are whole pixels inside the image
        x1, x2 = prediction["x"] - prediction["width"] / 2, prediction["x"] + prediction["width"] / 2
        assert x1 == int(x1) and 0 <= x1 < x2 <= 512
    assert '"width":512' in response.text and '.0,"height"' in response.text  # floats keep a decimal point


def test_client_id_becomes_inference_id_and_unknown_fields_are_ignored(client: httpx.Client) -> None:
    response = detect(client, image_value(photo("astronaut")), id="my-request-7", some_future_field={"a": 1})
    assert response.status_code == 200 and response.json()["inference_id"] == "my-request-7"


def test_a_list_gets_a_list_in_the_same_order(client: httpx.Client) -> None:
    astronaut, coffee = image_value(photo("astronaut")), image_value(photo("coffee"))
    response = detect(client, [astronaut, coffee, astronaut], confidence=0.2)
    assert response.status_code == 200
    results = response.json()
    assert [r["image"] for r in results] == [
        {"width": 512, "height": 512},
        {"width": 600, "height": 400},
        {"width": 512, "height": 512},
    ]
    assert without_ids(results[0]) == without_ids(results[2])
    assert len({r["inference_id"] for r in results}) == 1
    single = detect(client, astronaut, confidence=0.2).json()
    assert without_ids(single) == without_ids(results[0])
    one = detect(client, [astronaut]).json()
    assert isinstance(one, list) and len(one) == 1


def test_confidence_max_detections_and_class_filter(client: httpx.Client) -> None:
    image = image_value(photo("astronaut"))
    low = detect(client, image, confidence=0.05).json()["predictions"]
    high = detect(client, image, confidence="0.6").json()["predictions"]
    assert len(low) > len(high) >= 1
    assert all(p["confidence"] >= 0.6 for p in high)
    assert all(p["confidence"] >= 0.05 for p in low)
    assert [p["confidence"] for p in low] == sorted((p["confidence"] for p in low), reverse=True)
    assert len(detect(client, image, confidence=0.05, max_detections=2).json()["predictions"]) == 2
    assert detect(client, image, confidence=0.05, max_detections=0).json()["predictions"] == []
    only_faces = detect(client, image, confidence=0.05, class_filter=["FACE_FEMALE"]).json()["predictions"]
    assert only_faces and {p["class"] for p in only_faces} == {"FACE_FEMALE"}
    assert detect(client, image, class_filter=["NOT_A_CLASS"]).json()["predictions"] == []
    default = detect(client, image, confidence="default").json()["predictions"]
    assert without_ids({"predictions": default}) == without_ids(detect(client, image).json())
    assert detect(client, image, confidence="best").status_code == 200


def test_class_agnostic_nms_suppresses_across_classes(client: httpx.Client) -> None:
    image = image_value(photo("astronaut"))
    per_class = detect(client, image, confidence=0.01, iou_threshold=0.1).json()["predictions"]
    agnostic = detect(client, image, confidence=0.01, iou_threshold=0.1, class_agnostic_nms=True).json()["predictions"]
    assert len(agnostic) < len(per_class)


def test_url_and_data_url_inputs(client: httpx.Client, file_server: tuple) -> None:
    base_url, root = file_server
    (root / "astronaut.jpg").write_bytes(encode(photo("astronaut")))
    by_url = detect(client, {"type": "url", "value": f"{base_url}/astronaut.jpg"})
    by_value = detect(client, image_value(photo("astronaut")))
    assert by_url.status_code == 200, by_url.text
    assert without_ids(by_url.json()) == without_ids(by_value.json())
    data_url = "data:image/jpeg;base64," + b64(encode(photo("astronaut")))
    by_data_url = detect(client, {"type": "BASE64", "value": data_url})
    assert without_ids(by_data_url.json()) == without_ids(by_value.json())


def exif_rotated_jpeg() -> bytes:
    """The coffee photo (600 wide, 400 high as stored) tagged to be displayed rotated 90° clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(photo("coffee"), cv2.COLOR_BGR2RGB)).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation_is_applied_unless_disabled(client: httpx.Client) -> None:
    jpeg = exif_rotated_jpeg()
    rotated = detect(client, {"type": "base64", "value": b64(jpeg)}, confidence=0.05).json()
    assert rotated["image"] == {"width": 400, "height": 600}
    as_stored = detect(
        client, {"type": "base64", "value": b64(jpeg)}, confidence=0.05, disable_preproc_auto_orient=True
    ).json()
    assert as_stored["image"] == {"width": 600, "height": 400}
    pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    upright = detect(client, image_value(cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE), ".png"), confidence=0.05)
    assert without_ids(upright.json()) == without_ids(rotated)


@pytest.mark.parametrize(
    ("name", "ext", "size"),
    [
        ("camera", ".png", (512, 512)),  # grayscale
        ("logo", ".png", (500, 500)),  # RGBA
        ("astronaut", ".webp", (512, 512)),
        ("astronaut", ".bmp", (512, 512)),
        ("rocket", ".jpg", (640, 427)),
    ],
)
def test_image_formats_and_modes(client: httpx.Client, name: str, ext: str, size: tuple[int, int]) -> None:
    response = detect(client, image_value(photo(name), ext))
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": size[0], "height": size[1]}


def test_concurrent_requests_give_the_same_answers_as_sequential_ones(client: httpx.Client) -> None:
    names = ["astronaut", "coffee", "chelsea", "rocket"] * 4
    bodies = [image_value(photo(name)) for name in names]
    sequential = [without_ids(detect(client, body, confidence=0.1).json()) for body in bodies]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda body: without_ids(detect(client, body, confidence=0.1).json()), bodies))
    assert concurrent == sequential


def test_docs_and_service_routes(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert "/infer/object_detection" in schema["paths"]
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200
    info = client.get("/info").json()
    assert info["name"] == "visionserve" and info["version"] and info["uuid"]
    assert client.get("/healthz").json()["status"] == "healthy"
    assert client.get("/readiness").json() == {"status": "ready"}
