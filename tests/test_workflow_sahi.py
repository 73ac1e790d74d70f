"""SAHI in a workflow (image_slicer -> detection model on the slices -> detections_stitch), through the official
inference-sdk against a real server, checked against `supervision.InferenceSlicer` calling the same server's
/infer/object_detection for each slice of the same image; slices checked against slicing the image."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import Server, b64
from tests.test_official_sdk import SDK_PYTHON
from tests.test_workflows import DETECT, run_sdk, workflow

SLICER_SCRIPT = Path(__file__).parent / "official_sdk/sahi_slicer.py"
SLICE, RATIO = 256, 0.2  # on a 640x320 image: 3 x 2 slices in v2
OVERLAP = int(SLICE * RATIO)


@pytest.fixture(scope="module")
def wide_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two fixture photos side by side (640x320), lossless, so the server and supervision see the same pixels."""
    path = tmp_path_factory.mktemp("sahi") / "wide.png"
    cv2.imwrite(str(path), np.hstack([cv2.imread(str(image)) for image in DETECT]))
    return path


def slicer_step(version: str = "v2") -> dict:
    return {"type": f"roboflow_core/image_slicer@{version}", "name": "slicer", "image": "$inputs.image",
            "slice_width": SLICE, "slice_height": SLICE, "overlap_ratio_width": RATIO,
            "overlap_ratio_height": RATIO}  # fmt: skip


def sahi_spec(strategy: str) -> dict:
    steps = [
        slicer_step(),
        {"type": "roboflow_core/roboflow_object_detection_model@v2", "name": "det", "images": "$steps.slicer.slices",
         "model_id": "shapes-detect/1"},
        {"type": "roboflow_core/detections_stitch@v1", "name": "stitch", "reference_image": "$inputs.image",
         "predictions": "$steps.det.predictions", "overlap_filtering_strategy": strategy, "iou_threshold": 0.3},
    ]  # fmt: skip
    return workflow(steps, {"stitched": "$steps.stitch.predictions", "per_slice": "$steps.det.predictions"})


def supervision_sahi(server: Server, image: Path, overlap_filter: str) -> dict:
    command = [str(SDK_PYTHON), str(SLICER_SCRIPT), "--url", server.url, "--model", "shapes-detect/1", "--image",
               str(image), "--slice", str(SLICE), str(SLICE), "--overlap", str(OVERLAP), str(OVERLAP), "--filter",
               overlap_filter, "--iou", "0.3"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def _decoded(value: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(value), np.uint8), cv2.IMREAD_COLOR)


def _rows(xyxy: list[list[float]], confidence: list[float], names: list[str]) -> list[tuple]:
    return sorted((name, *box, score) for box, score, name in zip(xyxy, confidence, names))


def _stitched_rows(output: dict) -> list[tuple]:
    predictions = output["predictions"]
    xyxy = [[p["x"] - p["width"] / 2, p["y"] - p["height"] / 2, p["x"] + p["width"] / 2, p["y"] + p["height"] / 2]
            for p in predictions]  # fmt: skip
    return _rows(xyxy, [p["confidence"] for p in predictions], [p["class"] for p in predictions])


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_slices_equal_slicing_the_image(fixture_server: Server, wide_image: Path, version: str) -> None:
    """Over plain HTTP: the SDK keeps only each image's base64 text, the slices' origins are needed here."""
    spec = workflow([slicer_step(version)], {"slices": "$steps.slicer.slices"})
    body = {"specification": spec, "inputs": {"image": {"type": "base64", "value": b64(wide_image.read_bytes())}}}
    with fixture_server.client() as client:
        response = client.post("/workflows/run", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    image = cv2.imread(str(wide_image))
    geometry = []
    for item in output["slices"]:
        pixels = _decoded(item["value"])
        origin = item["parent_origin"]
        x, y = origin["offset_x"], origin["offset_y"]
        sliced = image[y : y + SLICE, x : x + SLICE]
        assert pixels.shape == sliced.shape
        assert np.abs(pixels.astype(int) - sliced).mean() < 4  # the same pixels, through a JPEG
        assert (origin["width"], origin["height"]) == (640, 320) and item["root_parent_origin"] == origin
        geometry.append([x, y, x + pixels.shape[1], y + pixels.shape[0]])
    if version == "v2":  # equal-sized slices, no repeats: supervision's own geometry
        reference = supervision_sahi(fixture_server, wide_image, "none")["slices"]
        assert geometry == reference
        assert len({(x2 - x1, y2 - y1) for x1, y1, x2, y2 in geometry}) == 1
    else:  # stride 256 - 51 from 0, the last slices clipped at the edge
        xs, ys = [0, 205, 410, 615], [0, 205]
        assert geometry == [[x, y, min(x + SLICE, 640), min(y + SLICE, 320)] for y in ys for x in xs]


@pytest.mark.parametrize(("strategy", "overlap_filter"),
                         [("nms", "non_max_suppression"), ("nmm", "non_max_merge"), ("none", "none")])
def test_sahi_stitch_equals_supervision_inference_slicer(
    fixture_server: Server, wide_image: Path, tmp_path: Path, strategy: str, overlap_filter: str
) -> None:
    (output,) = run_sdk(fixture_server, sahi_spec(strategy), [wide_image], tmp_path)["outputs"]
    reference = supervision_sahi(fixture_server, wide_image, overlap_filter)
    assert len(output["per_slice"]) == len(reference["slices"]) == 6  # nested per slice until the stitch
    assert output["stitched"]["image"] == {"width": 640, "height": 320}
    served = _stitched_rows(output["stitched"])
    expected = _rows(reference["xyxy"], reference["confidence"], reference["class_name"])
    assert len(served) == len(expected) >= 7
    for got, want in zip(served, expected):
        assert got[0] == want[0]
        assert got[1:] == pytest.approx(want[1:], abs=1e-3)
    assert all(p["parent_id"] == output["stitched"]["predictions"][0]["parent_id"]
               for p in output["stitched"]["predictions"])  # fmt: skip
    assert "parent_origin" not in output["stitched"]["predictions"][0]  # back on the input image
