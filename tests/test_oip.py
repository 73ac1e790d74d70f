"""The Open Inference Protocol (`/v2`) against a real server, with Triton's official client
(`tritonclient[http]`): health, metadata, images in (JSON and binary data), raw tensors, and errors as the
protocol wants them."""

from __future__ import annotations

import base64
import gzip
import importlib.resources
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import FIXTURES, Server, b64, encode, photo

NUDENET = ("nudenet", "1")


def client_for(server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120)


@pytest.fixture(scope="module")
def oip(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = client_for(server)
    yield client
    client.close()


def images_input(jpegs: list[bytes], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("images", [len(jpegs)], "BYTES")
    values = jpegs if binary else [base64.b64encode(jpeg) for jpeg in jpegs]
    return tensor.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)


def reference_xyxy(predictions: list[dict]) -> np.ndarray:
    """`/infer/*` boxes (centre, size) as the corners the protocol answers."""
    rows = [
        [p["x"] - p["width"] / 2, p["y"] - p["height"] / 2, p["x"] + p["width"] / 2, p["y"] + p["height"] / 2]
        for p in predictions
    ]
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def without_ids(response: dict) -> dict:
    predictions = response["predictions"]
    if isinstance(predictions, list):
        predictions = [{k: v for k, v in p.items() if k != "detection_id"} for p in predictions]
    return {
        **{k: v for k, v in response.items() if k not in ("inference_id", "time")},
        "predictions": predictions,
    }


def post_infer(
    client: httpx.Client, body: object, model: str = "nudenet/versions/1", **kwargs: object
) -> httpx.Response:
    return client.post(f"/v2/models/{model}/infer", content=orjson.dumps(body), **kwargs)


def test_server_health_and_metadata(oip: triton.InferenceServerClient) -> None:
    assert oip.is_server_live() and oip.is_server_ready()
    metadata = oip.get_server_metadata()
    assert metadata["name"] == "visionserve" and "binary_tensor_data" in metadata["extensions"]


def test_health_answers_have_empty_bodies(client: httpx.Client) -> None:
    for path in ("/v2/health/live", "/v2/health/ready"):
        response = client.get(path)
        assert response.status_code == 200 and response.content == b""


def test_model_metadata_describes_both_signatures(oip: triton.InferenceServerClient) -> None:
    metadata = oip.get_model_metadata(*NUDENET)
    assert metadata["name"] == "nudenet" and metadata["versions"] == ["1"]
    assert metadata["parameters"]["model_id"] == "nudenet/1"
    assert metadata["parameters"]["task"] == "object-detection"
    assert orjson.loads(metadata["parameters"]["class_names"])[1] == "FACE_FEMALE"
    assert "confidence" in metadata["parameters"]["options"]

    def tensors(kind: str, signature: str) -> dict[str, tuple[str, list[int]]]:
        return {
            t["name"]: (t["datatype"], t["shape"])
            for t in metadata[kind]
            if t["parameters"]["signature"] == signature
        }

    assert tensors("inputs", "images") == {"images": ("BYTES", [-1])}
    assert tensors("inputs", "tensors") == {"images_raw": ("FP32", [-1, 3, -1, -1])}  # `images` is taken
    assert tensors("outputs", "images") == {
        "predictions": ("BYTES", [-1]),
        "image_index": ("INT32", [-1]),
        "scores": ("FP32", [-1]),
        "class_ids": ("INT32", [-1]),
        "boxes": ("FP32", [-1, 4]),
    }
    assert tensors("outputs", "tensors") == {"output0": ("FP32", [-1, 22, -1])}


def test_model_readiness(oip: triton.InferenceServerClient, client: httpx.Client) -> None:
    assert oip.is_model_ready(*NUDENET)
    assert not oip.is_model_ready("no-such-model", "1")
    response = client.get("/v2/models/no-such-model/versions/1/ready")
    assert response.status_code == 404 and "no-such-model/1" in response.json()["error"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_images_in_equal_infer_object_detection(
    oip: triton.InferenceServerClient, client: httpx.Client, binary: bool
) -> None:
    jpeg = encode(photo("astronaut"))
    expected = client.post(
        "/infer/object_detection",
        json={"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(jpeg)}},
    ).json()
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary)
        for name in ("boxes", "scores", "class_ids", "image_index", "predictions")
    ]
    result = oip.infer(
        "nudenet", [images_input([jpeg], binary)], model_version="1", outputs=outputs, request_id="r-7"
    )
    assert result.get_response()["id"] == "r-7"
    assert len(expected["predictions"]) >= 1
    np.testing.assert_array_equal(result.as_numpy("boxes"), reference_xyxy(expected["predictions"]))
    np.testing.assert_array_equal(
        result.as_numpy("scores"),
        np.array([p["confidence"] for p in expected["predictions"]], dtype=np.float32),
    )
    np.testing.assert_array_equal(
        result.as_numpy("class_ids"), [p["class_id"] for p in expected["predictions"]]
    )
    assert result.as_numpy("class_ids").dtype == np.int32
    np.testing.assert_array_equal(result.as_numpy("image_index"), np.zeros(len(expected["predictions"])))
    (answer,) = result.as_numpy("predictions")
    assert without_ids(orjson.loads(answer)) == without_ids(expected)
    assert orjson.loads(answer)["inference_id"] == "r-7"


def test_several_images_with_task_parameters(oip: triton.InferenceServerClient, client: httpx.Client) -> None:
    jpegs = [encode(photo("astronaut")), encode(photo("coffee")), encode(photo("astronaut"))]
    options = {"confidence": 0.2, "max_detections": 2}
    result = oip.infer("nudenet", [images_input(jpegs, binary=True)], model_version="1", parameters=options)
    index = result.as_numpy("image_index")
    boxes = result.as_numpy("boxes")
    for number, jpeg in enumerate(jpegs):
        expected = client.post(
            "/infer/object_detection",
            json={"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(jpeg)}, **options},
        ).json()
        assert len(expected["predictions"]) <= 2
        np.testing.assert_array_equal(boxes[index == number], reference_xyxy(expected["predictions"]))
    assert [orjson.loads(answer)["image"]["width"] for answer in result.as_numpy("predictions")] == [
        512,
        600,
        512,
    ]
    only_faces = oip.infer(
        "nudenet",
        [images_input(jpegs[:1], True)],
        model_version="1",
        parameters={"class_filter": "FACE_FEMALE,FACE_MALE", "confidence": 0.05},
    )
    assert set(only_faces.as_numpy("class_ids").tolist()) <= {1, 12}


def nudenet_session() -> ort.InferenceSession:
    return ort.InferenceSession(
        str(importlib.resources.files("nudenet") / "320n.onnx"), providers=["CPUExecutionProvider"]
    )


def test_raw_tensors_in_and_out(oip: triton.InferenceServerClient) -> None:
    batch = np.random.default_rng(3).random((2, 3, 320, 320), dtype=np.float32)
    tensor = triton.InferInput("images", list(batch.shape), "FP32").set_data_from_numpy(
        batch, binary_data=True
    )
    result = oip.infer("nudenet", [tensor], model_version="1")
    (expected,) = nudenet_session().run(None, {"images": batch})
    answered = result.as_numpy("output0")
    assert answered.shape == (2, 22, 2100) and answered.dtype == np.float32
    np.testing.assert_allclose(answered, expected, rtol=1e-4, atol=1e-3)


def test_raw_tensors_as_flat_and_nested_json(client: httpx.Client) -> None:
    batch = np.random.default_rng(4).random((1, 3, 64, 96), dtype=np.float32)  # the export has dynamic sides
    (expected,) = nudenet_session().run(None, {"images": batch})
    for data in (batch.ravel().tolist(), batch.tolist()):
        response = post_infer(
            client,
            {"inputs": [{"name": "images", "shape": [1, 3, 64, 96], "datatype": "FP32", "data": data}]},
        )
        assert response.status_code == 200, response.text
        (output,) = response.json()["outputs"]
        assert output["name"] == "output0" and output["shape"] == list(expected.shape)
        np.testing.assert_allclose(
            np.array(output["data"], dtype=np.float32).reshape(output["shape"]),
            expected,
            rtol=1e-4,
            atol=1e-3,
        )


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    json_part = orjson.dumps(header)
    return json_part + b"".join(chunks), {"Inference-Header-Content-Length": str(len(json_part))}


def bytes_element(data: bytes) -> bytes:
    return struct.pack("<I", len(data)) + data


JPEG = encode(photo("astronaut"))
BAD_REQUESTS = {
    "wrong datatype": ({"inputs": [{"name": "images", "shape": [1], "datatype": "INT32", "data": [1]}]},),
    "unknown datatype": ({"inputs": [{"name": "images", "shape": [1], "datatype": "FP8", "data": [1]}]},),
    "unknown tensor name": (
        {"inputs": [{"name": "pixels", "shape": [1], "datatype": "BYTES", "data": [b64(JPEG)]}]},
    ),
    "two inputs": (
        {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [b64(JPEG)]}] * 2},
    ),
    "no input": ({"inputs": []},),
    "wrong raw shape": (
        {"inputs": [{"name": "images", "shape": [1, 4, 8, 8], "datatype": "FP32", "data": [0.0] * 256}]},
    ),
    "raw shape of three axes": (
        {"inputs": [{"name": "images", "shape": [3, 8, 8], "datatype": "FP32", "data": [0.0] * 192}]},
    ),
    "shape larger than the data": (
        {"inputs": [{"name": "images", "shape": [2], "datatype": "BYTES", "data": [b64(JPEG)]}]},
    ),
    "negative shape": (
        {"inputs": [{"name": "images", "shape": [-1], "datatype": "BYTES", "data": [b64(JPEG)]}]},
    ),
    "ragged data": (
        {
            "inputs": [
                {"name": "images", "shape": [1, 3, 2, 2], "datatype": "FP32", "data": [[1.0], [1.0, 2.0]]}
            ]
        },
    ),
    "text in numbers": (
        {"inputs": [{"name": "images", "shape": [1], "datatype": "FP32", "data": [{"a": 1}]}]},
    ),
    "numbers in BYTES": ({"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [1]}]},),
    "no data": ({"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES"}]},),
    "not an image": (
        {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["aGVsbG8="]}]},
    ),
    "unknown output": (
        {
            "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [b64(JPEG)]}],
            "outputs": [{"name": "output0"}],
        },
    ),
    "bad parameter": (
        {
            "parameters": {"confidence": "high"},
            "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [b64(JPEG)]}],
        },
    ),
    "negative max_detections": (
        {
            "parameters": {"max_detections": -1},
            "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [b64(JPEG)]}],
        },
    ),
    "binary size beyond the body": binary_body(
        {
            "inputs": [
                {"name": "images", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 999}}
            ]
        },
        bytes_element(b"abc"),
    ),
    "binary data of no input": binary_body(
        {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [b64(JPEG)]}]}, b"xyz"
    ),
    "BYTES element cut short": binary_body(
        {
            "inputs": [
                {"name": "images", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 7}}
            ]
        },
        struct.pack("<I", 100) + b"abc",
    ),
    "binary size of the wrong datatype size": binary_body(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": [1, 3, 8, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        },
        bytes(8),
    ),
}


@pytest.mark.parametrize("request_parts", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_requests_get_a_400_with_an_error(client: httpx.Client, request_parts: tuple) -> None:
    if isinstance(request_parts[0], bytes):
        body, headers = request_parts
        response = client.post("/v2/models/nudenet/versions/1/infer", content=body, headers=headers)
    else:
        response = post_infer(client, request_parts[0])
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"{", {}),
        (b"not json at all", {}),
        (b'{"inputs": 3}', {}),
        (b"{}", {"Inference-Header-Content-Length": "99"}),
        (b"{}", {"Inference-Header-Content-Length": "-1"}),
    ],
)
def test_malformed_bodies_get_a_400_with_an_error(client: httpx.Client, body: bytes, headers: dict) -> None:
    response = client.post("/v2/models/nudenet/versions/1/infer", content=body, headers=headers)
    assert response.status_code == 400 and set(response.json()) == {"error"}


def test_the_official_client_reports_errors(oip: triton.InferenceServerClient) -> None:
    wrong = triton.InferInput("images", [1], "INT32").set_data_from_numpy(np.array([1], dtype=np.int32))
    with pytest.raises(InferenceServerException) as error:
        oip.infer("nudenet", [wrong], model_version="1")
    assert error.value.status() == "400" and "BYTES" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        oip.infer("no-such-model", [images_input([JPEG], True)], model_version="3")
    assert error.value.status() == "404" and "no-such-model/3" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        oip.get_model_metadata("no-such-model")
    assert error.value.status() == "404"
    with pytest.raises(InferenceServerException) as error:
        oip.get_model_metadata(".hidden", "1")
    assert error.value.status() == "400"


def test_unversioned_names_are_single_segment_ids(client: httpx.Client) -> None:
    response = post_infer(
        client,
        {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [b64(JPEG)]}]},
        model="nudenet",
    )
    assert response.status_code == 404 and "'nudenet'" in response.json()["error"]


def route_count(client: httpx.Client, route: str) -> float:
    pattern = re.compile(
        rf'^visionserve_requests_total\{{[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)$', re.MULTILINE
    )
    return sum(float(value) for value in pattern.findall(client.get("/metrics").text))


def test_v2_paths_never_reach_the_legacy_route(client: httpx.Client) -> None:
    legacy_before = route_count(client, "/{project}/{version}")
    infer_before = route_count(client, "/v2/models/{name}/infer")
    response = client.post("/v2/models/x/infer", content=b"{}", headers={"X-Request-ID": "oip-1"})
    assert response.status_code == 400 and "inputs" in response.json()["error"]
    assert response.headers["x-request-id"] == "oip-1"
    for path in ("/v2/models", "/v2/health", "/v2/logging"):
        for method in ("GET", "POST"):
            answer = client.request(method, path)
            assert answer.status_code == 404 and "Open Inference Protocol" in answer.json()["error"]
    assert client.get("/v2/models/x/statistics/more").json() == {"error": "Not Found"}
    assert route_count(client, "/{project}/{version}") == legacy_before
    assert route_count(client, "/v2/models/{name}/infer") == infer_before + 1


def test_keys_and_limits_apply_with_protocol_errors(start_server) -> None:
    server = start_server({"VISIONSERVE_API_KEYS": "secret-1", "VISIONSERVE_MAX_BODY_BYTES": "200000"})
    oip = client_for(server)
    assert oip.is_server_live() and oip.is_server_ready()  # health stays open, as /healthz does
    for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 403)):
        with httpx.Client(base_url=server.url) as http:
            response = http.get("/v2/models/nudenet/versions/1", headers=headers)
        assert response.status_code == status and set(response.json()) == {"error"}
        with pytest.raises(InferenceServerException) as error:
            oip.infer("nudenet", [images_input([JPEG], True)], model_version="1", headers=headers)
        assert error.value.status() == str(status) and "key" in error.value.message()
    key = {"Authorization": "Bearer secret-1"}
    result = oip.infer("nudenet", [images_input([JPEG], True)], model_version="1", headers=key)
    assert result.as_numpy("boxes").shape[1] == 4
    assert oip.is_model_ready(*NUDENET, query_params={"api_key": "secret-1"})
    with pytest.raises(InferenceServerException) as error:
        oip.infer("nudenet", [images_input([JPEG, bytes(250_000)], True)], model_version="1", headers=key)
    assert error.value.status() == "413" and "VISIONSERVE_MAX_BODY_BYTES" in error.value.message()
    with pytest.raises(InferenceServerException) as error:  # small once compressed, too large once inflated
        oip.infer(
            "nudenet",
            [images_input([JPEG, bytes(250_000)], True)],
            model_version="1",
            headers=key,
            request_compression_algorithm="gzip",
        )
    assert error.value.status() == "413" and "once inflated" in error.value.message()
    oip.close()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(oip: triton.InferenceServerClient, algorithm: str) -> None:
    plain = oip.infer("nudenet", [images_input([JPEG], True)], model_version="1")
    packed = oip.infer(
        "nudenet",
        [images_input([JPEG], True)],
        model_version="1",
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(packed.as_numpy("boxes"), plain.as_numpy("boxes"))


def test_unknown_or_broken_encodings_get_4xx(client: httpx.Client) -> None:
    for encoding, body, status in (
        ("br", b"{}", 415),
        ("gzip", b"not gzip", 400),
        ("gzip", gzip.compress(b"{}")[:-9], 400),
    ):
        response = client.post(
            "/v2/models/nudenet/infer", content=body, headers={"Content-Encoding": encoding}
        )
        assert response.status_code == status and set(response.json()) == {"error"}, response.text


def test_the_request_deadline_applies(start_server) -> None:
    server = start_server({"VISIONSERVE_REQUEST_TIMEOUT_S": "0.5", "VISIONSERVE_PRELOAD_MODELS": "nudenet/1"})
    oip = client_for(server)
    with pytest.raises(InferenceServerException) as error:
        oip.infer("nudenet", [images_input([encode(photo("retina"))] * 40, True)], model_version="1")
    assert error.value.status() == "504" and "longer than 0.5 s" in error.value.message()
    oip.close()


FIXTURE_CASES = {  # case → (model id, route, test image, options)
    "segment-polygon": ("shapes-segment/1", "/infer/instance_segmentation", "segment_0.jpg", {}),
    "segment-rle": (
        "shapes-segment/1",
        "/infer/instance_segmentation",
        "segment_0.jpg",
        {"response_mask_format": "rle"},
    ),
    "pose": ("shapes-pose/1", "/infer/keypoints_detection", "pose_0.jpg", {}),
    "obb": ("shapes-obb/1", "/infer/obb", "obb_0.jpg", {}),
    "classify": ("shapes-classify/1", "/infer/classification", "classify_0.jpg", {}),
    "multilabel": ("shapes-multilabel/1", "/infer/classification", "classify_1.jpg", {}),
}


@pytest.mark.parametrize("case", list(FIXTURE_CASES))
def test_every_task_answers_its_tensors(fixture_server: Server, case: str) -> None:
    model_id, route, image, options = FIXTURE_CASES[case]
    jpeg = (FIXTURES / "images" / image).read_bytes()
    with httpx.Client(base_url=fixture_server.url, timeout=120) as http:
        expected = http.post(
            route, json={"model_id": model_id, "image": {"type": "base64", "value": b64(jpeg)}, **options}
        ).json()
    oip = client_for(fixture_server)
    name, version = model_id.split("/")
    metadata = oip.get_model_metadata(name, version)
    result = oip.infer(name, [images_input([jpeg], True)], model_version=version, parameters=options)
    oip.close()
    answered = {output["name"] for output in result.get_response()["outputs"]}
    assert answered == {t["name"] for t in metadata["outputs"] if t["parameters"]["signature"] == "images"}
    (answer,) = result.as_numpy("predictions")
    assert without_ids(orjson.loads(answer)) == without_ids(expected)
    if "predicted_classes" in expected:  # multi-label: a row per predicted class
        rows = [expected["predictions"][name] for name in expected["predicted_classes"]]
    else:
        rows = expected["predictions"]
    if expected.get("top") is not None or "predicted_classes" in expected:
        assert "boxes" not in answered
    else:
        assert result.as_numpy("boxes").shape == (len(rows), 4)
    assert rows, "the fixture image should give at least one prediction"
    np.testing.assert_array_equal(result.as_numpy("class_ids"), [row["class_id"] for row in rows])
    np.testing.assert_array_equal(
        result.as_numpy("scores"), np.array([row["confidence"] for row in rows], np.float32)
    )
    if "segment" in model_id:
        field = "rle" if options else "points"
        assert [orjson.loads(mask) for mask in result.as_numpy("masks")] == [p[field] for p in rows]
        np.testing.assert_array_equal(result.as_numpy("boxes"), reference_xyxy(rows))
    if "pose" in model_id:
        keypoints = result.as_numpy("keypoints")
        (described,) = [t["shape"] for t in metadata["outputs"] if t["name"] == "keypoints"]
        assert described[0] == -1 and list(keypoints.shape[1:]) == described[1:]
        for row, prediction in zip(keypoints, rows):
            for point in prediction["keypoints"]:
                np.testing.assert_array_equal(
                    row[point["class_id"]],
                    np.array([point["x"], point["y"], point["confidence"]], np.float32),
                )
    if "obb" in model_id:
        rotated = result.as_numpy("rotated_boxes")
        np.testing.assert_array_equal(
            rotated,
            np.array([[p["x"], p["y"], p["width"], p["height"], p["angle"]] for p in rows], np.float32),
        )
        corners = np.array([[[q["x"], q["y"]] for q in p["points"]] for p in rows], np.float32)
        np.testing.assert_array_equal(
            result.as_numpy("boxes"), np.concatenate([corners.min(1), corners.max(1)], 1)
        )


def test_readme_example_runs(server: Server) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = re.search(r"### Open Inference Protocol.*?```python\n(.*?)```", readme, re.DOTALL)
    assert block, "the README lost its Open Inference Protocol example"
    code = block.group(1).replace("127.0.0.1:9001", server.url.removeprefix("http://"))
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    documented = re.search(r"print\(.*\)\s*# (.*)", block.group(1))
    assert documented and completed.stdout.split() == documented.group(1).split()
