"""Ultralytics RT-DETR, YOLOX, torchvision classifiers, Ultralytics classifiers and in-graph-NMS exports through
the real server, box by box against each family's own package run on the same models (tools/make_family_fixtures.py
recorded those answers in tests/fixtures/families/expected.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import FIXTURES, SCORE_TOLERANCE, Server, b64
from visionserve.cli import app

FAMILIES = FIXTURES / "families"
EXPECTED = json.loads((FAMILIES / "expected.json").read_text())
SHAPES = "circle,square,triangle"
MODELS = {  # model id → (file, `models add` flags)
    "rtdetr/1": (FAMILIES / "rtdetr-shapes.onnx", []),
    "yolox-raw/1": (FAMILIES / "yolox-nano-shapes-raw.onnx", ["--family", "yolox", "--classes", SHAPES]),
    "yolox-decoded/1": (FAMILIES / "yolox-nano-shapes-decoded.onnx", ["--family", "yolox", "--classes", SHAPES]),
    "mobilenet/1": (FAMILIES / "torchvision-mobilenet_v3_small.onnx", ["--normalize", "imagenet", "--classes", SHAPES]),
    "dynamic-nms/1": (FAMILIES / "shapes-detect-dynamic-nms.onnx", []),
    "shapes-classify/1": (FIXTURES / "models/shapes-classify.onnx", []),
}


@pytest.fixture(scope="module")
def families_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("families-home")
    runner = CliRunner()
    for model_id, (path, flags) in MODELS.items():
        result = runner.invoke(app, ["models", "add", str(path), "--id", model_id, *flags],
                               env={"VISIONSERVE_HOME": str(home)})
        assert result.exit_code == 0, result.output
    running = Server(home).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(families_server: Server) -> Iterator[httpx.Client]:
    with families_server.client() as client:
        yield client


def infer(http: httpx.Client, route: str, model_id: str, images: list[str], **options: object) -> list[dict]:
    values = [{"type": "base64", "value": b64((FIXTURES / "images" / name).read_bytes())} for name in images]
    response = http.post(route, json={"model_id": model_id, "image": values if len(values) > 1 else values[0], **options})
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer if isinstance(answer, list) else [answer]


def assert_same_boxes(answer: dict, expected: list[dict]) -> None:
    """Rank by rank: class, score, and box (the server clips to the image and rounds to whole pixels)."""
    size = answer["image"]
    limit = [size["width"], size["height"], size["width"], size["height"]]
    predictions = answer["predictions"]
    assert len(predictions) == len(expected) > 0
    for prediction, theirs in zip(predictions, expected):
        assert prediction["class_id"] == theirs["class_id"]
        assert prediction["confidence"] == pytest.approx(theirs["score"], abs=SCORE_TOLERANCE)
        x, y, w, h = (prediction[key] for key in ("x", "y", "width", "height"))
        box = np.array([x - w / 2, y - h / 2, x + w / 2, y + h / 2])
        assert np.abs(box - np.clip(theirs["xyxy"], 0, limit)).max() <= 0.51


@pytest.mark.parametrize("image", list(EXPECTED["rtdetr-shapes.onnx"]["images"]))
def test_rtdetr_equals_ultralytics_predictor(http: httpx.Client, image: str) -> None:
    settings = EXPECTED["rtdetr-shapes.onnx"]["settings"]
    (answer,) = infer(http, "/infer/object_detection", "rtdetr/1", [image], confidence=settings["conf"],
                      max_detections=settings["max_det"])
    assert_same_boxes(answer, EXPECTED["rtdetr-shapes.onnx"]["images"][image])


@pytest.mark.parametrize("model_id", ["yolox-raw/1", "yolox-decoded/1"])
@pytest.mark.parametrize("image", list(EXPECTED["yolox-nano-shapes-raw.onnx"]["images_postprocess"]))
def test_yolox_equals_its_own_postprocess(http: httpx.Client, model_id: str, image: str) -> None:
    entry = EXPECTED[MODELS[model_id][0].name]
    settings = entry["settings"]
    expected = entry["images_postprocess"][image]  # yolox.utils.postprocess: class-aware NMS, top 100 kept
    (answer,) = infer(http, "/infer/object_detection", model_id, [image], confidence=settings["score_thr"],
                      iou_threshold=settings["nms_thr"], max_detections=len(expected))
    assert_same_boxes(answer, expected)


@pytest.mark.parametrize("image", list(EXPECTED["torchvision-mobilenet_v3_small.onnx"]["images"]))
def test_torchvision_classifier_equals_torchvision_transforms(http: httpx.Client, image: str) -> None:
    probabilities = EXPECTED["torchvision-mobilenet_v3_small.onnx"]["images"][image]
    (answer,) = infer(http, "/infer/classification", "mobilenet/1", [image], confidence=0.0)
    mine = {prediction["class_id"]: prediction["confidence"] for prediction in answer["predictions"]}
    assert [mine[index] for index in range(3)] == pytest.approx(probabilities, abs=1e-4)  # answers have 4 decimals


@pytest.mark.parametrize("image", list(EXPECTED["shapes-classify.onnx"]["images"]))
def test_ultralytics_classifier_equals_its_predictor(http: httpx.Client, image: str) -> None:
    probabilities = EXPECTED["shapes-classify.onnx"]["images"][image]
    (answer,) = infer(http, "/infer/classification", "shapes-classify/1", [image], confidence=0.0)
    mine = {prediction["class_id"]: prediction["confidence"] for prediction in answer["predictions"]}
    assert [mine[index] for index in range(3)] == pytest.approx(probabilities, abs=1e-3)


def test_dynamic_nms_export_answers_every_image_of_a_batch(http: httpx.Client) -> None:
    entry = EXPECTED["shapes-detect-dynamic-nms.onnx"]
    # onnxruntime alone: batched, the second image loses its rows.
    assert entry["batch_of_two_onnxruntime"]
    images = list(entry["images"])
    batch = infer(http, "/infer/object_detection", "dynamic-nms/1", images, confidence=entry["settings"]["conf"])
    assert len(batch) == len(images)
    for answer, image in zip(batch, images):
        assert_same_boxes(answer, entry["images"][image])


def test_yolo26_depth_export_is_refused_by_task(tmp_path: Path) -> None:
    """Depth is not served; YOLO26 semantic exports are (tests/test_semantic.py)."""
    result = CliRunner().invoke(app, ["models", "add", str(FAMILIES / "yolo26-depth-tiny.onnx"), "--id", "x/1"],
                                env={"VISIONSERVE_HOME": str(tmp_path)})
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "task is 'depth'" in output and "broken" not in output
