"""Perspective correction through the official `inference-sdk` against a real server: detections and the warped
image equal computing the same transform with OpenCV directly on /infer's boxes."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import Server, b64
from tests.test_workflows import DETECT, detector, infer, run_sdk, workflow

# A quadrilateral inside the 320x320 test image, its points deliberately out of order
POLYGON = [[300, 290], [40, 20], [20, 300], [280, 30]]
CLOCKWISE = np.array([[40, 20], [280, 30], [300, 290], [20, 300]], dtype=np.float32)  # TL, TR, BR, BL
WIDTH, HEIGHT = 400, 300


@pytest.fixture(scope="module")
def http(fixture_server: Server):
    with fixture_server.client() as client:
        yield client


def corrector(**options: object) -> dict:
    return {"type": "roboflow_core/perspective_correction@v1", "name": "flat", "images": "$inputs.image",
            "predictions": "$steps.det.predictions", "perspective_polygons": POLYGON,
            "transformed_rect_width": WIDTH, "transformed_rect_height": HEIGHT, **options}  # fmt: skip


def moved_boxes(matrix: np.ndarray, predictions: list[dict]) -> list[list[float]]:
    expected = []
    for p in predictions:
        x1, y1 = p["x"] - p["width"] / 2, p["y"] - p["height"] / 2
        x2, y2 = p["x"] + p["width"] / 2, p["y"] + p["height"] / 2
        points = np.array([[[x1, y1]], [[x2, y1]], [[x2, y2]], [[x1, y2]]], np.float64)
        corners = cv2.perspectiveTransform(points, matrix)
        expected.append([*corners.reshape(4, 2).min(axis=0), *corners.reshape(4, 2).max(axis=0)])
    return expected


def test_boxes_and_warped_image_equal_opencv(fixture_server: Server, http: httpx.Client, tmp_path: Path) -> None:
    spec = workflow([detector(), corrector(warp_image=True)], {"flat": "$steps.flat.corrected_coordinates",
                    "warped": "$steps.flat.warped_image", "w": "$steps.flat.extended_transformed_rect_width",
                    "h": "$steps.flat.extended_transformed_rect_height"})  # fmt: skip
    result = run_sdk(fixture_server, spec, DETECT[:1], tmp_path, "--detections", "flat")
    (output,), (read,) = result["outputs"], result["supervision"]
    corners = np.array([[0, 0], [WIDTH - 1, 0], [WIDTH - 1, HEIGHT - 1], [0, HEIGHT - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(CLOCKWISE, corners)
    direct = infer(http, "object_detection", "shapes-detect/1", DETECT[0].read_bytes())
    assert np.allclose(read["flat"]["xyxy"], moved_boxes(matrix, direct["predictions"]), atol=1e-6)
    assert [p["class"] for p in output["flat"]["predictions"]] == [p["class"] for p in direct["predictions"]]
    assert output["flat"]["image"] == {"width": WIDTH, "height": HEIGHT}
    assert (output["w"], output["h"]) == (WIDTH, HEIGHT)
    warped = cv2.imdecode(np.frombuffer(base64.b64decode(output["warped"]), np.uint8), cv2.IMREAD_COLOR)
    expected = cv2.warpPerspective(cv2.imread(str(DETECT[0])), matrix, (WIDTH, HEIGHT))
    assert warped.shape == expected.shape and np.abs(warped.astype(int) - expected).mean() < 4  # through a JPEG


def test_rectangle_extends_to_hold_every_anchor(http: httpx.Client) -> None:
    small = [[100, 100], [200, 100], [200, 200], [100, 200]]  # the shapes lie partly outside it
    step = corrector(perspective_polygons=small, extend_perspective_polygon_by_detections_anchor="CENTER")
    spec = workflow([detector(), step],
                    {"flat": "$steps.flat.corrected_coordinates", "w": "$steps.flat.extended_transformed_rect_width",
                     "h": "$steps.flat.extended_transformed_rect_height"})  # fmt: skip
    image = {"type": "base64", "value": b64(DETECT[0].read_bytes())}
    response = http.post("/workflows/run", json={"specification": spec, "inputs": {"image": image}})
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    direct = infer(http, "object_detection", "shapes-detect/1", DETECT[0].read_bytes())["predictions"]
    corners = np.array([[0, 0], [WIDTH - 1, 0], [WIDTH - 1, HEIGHT - 1], [0, HEIGHT - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(np.array(small, dtype=np.float32), corners)
    points = np.array([[[p["x"], p["y"]]] for p in direct], np.float64)
    centers = cv2.perspectiveTransform(points, matrix).reshape(-1, 2)
    low, high = np.minimum(centers.min(axis=0), 0), np.maximum(centers.max(axis=0), [WIDTH - 1, HEIGHT - 1])
    assert (output["w"], output["h"]) == (math.ceil(high[0] - low[0]) + 1, math.ceil(high[1] - low[1]) + 1)
    assert output["w"] > WIDTH and output["h"] > HEIGHT
    shifted = np.array([[1, 0, -low[0]], [0, 1, -low[1]], [0, 0, 1]]) @ matrix
    served = [[p["x"] - p["width"] / 2, p["y"] - p["height"] / 2, p["x"] + p["width"] / 2, p["y"] + p["height"] / 2]
              for p in output["flat"]["predictions"]]  # fmt: skip
    assert np.allclose(served, moved_boxes(shifted, direct), atol=1e-6)
    for x, y in ((p["x"], p["y"]) for p in output["flat"]["predictions"]):
        assert 0 <= x <= output["w"] and 0 <= y <= output["h"]  # every centre is inside the rectangle


def test_a_bad_polygon_names_the_step(http: httpx.Client) -> None:
    spec = workflow([detector(), corrector(perspective_polygons=[[0, 0], [1, 1], [2, 2]])],
                    {"flat": "$steps.flat.corrected_coordinates"})
    image = {"type": "base64", "value": b64(DETECT[0].read_bytes())}
    response = http.post("/workflows/run", json={"specification": spec, "inputs": {"image": image}})
    assert response.status_code == 400 and "Step 'flat'" in response.json()["message"] and "4 [x, y]" in response.text
