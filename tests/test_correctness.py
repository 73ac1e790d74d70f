"""The server's boxes equal a straightforward, independent decode of the same ONNX model's output.

The reference decode below shares no code with the server: its own letterbox (cv2.copyMakeBorder), its own
transpose and thresholding, OpenCV's NMS, and a single-gain mapping back to the image.
"""

from __future__ import annotations

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import image_value, photo
from tests.reference_decode import detections, letterbox, metadata
from visionserve.models.builtin import BuiltinModels

CONFIDENCE, IOU = 0.01, 0.3

# Photos, plus non-square crops and resizes so the letterbox pads on either axis.
CASES = {
    "astronaut": lambda: photo("astronaut"),
    "astronaut-wide": lambda: cv2.resize(photo("astronaut"), (900, 400)),
    "astronaut-tall-crop": lambda: photo("astronaut")[:, 150:450],
    "coffee": lambda: photo("coffee"),
    "chelsea": lambda: photo("chelsea"),
    "camera-grayscale": lambda: cv2.cvtColor(photo("camera"), cv2.COLOR_GRAY2BGR),
    "retina-large": lambda: photo("retina"),
}


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    package = BuiltinModels().find("nudenet/1")
    assert package is not None
    return ort.InferenceSession(str(package.weights_path), providers=["CPUExecutionProvider"])


def reference_decode(session: ort.InferenceSession, bgr: np.ndarray) -> list[tuple[int, float, list[float]]]:
    """(class id, score, [x1, y1, x2, y2]) for each detection, Ultralytics-style."""
    meta = metadata(session)
    boxed = letterbox(bgr, meta["imgsz"][0])
    rows = session.run(None, {session.get_inputs()[0].name: boxed.tensor})[0][0].T  # [N, 4 + C]
    found = detections(rows, len(meta["names"]), CONFIDENCE, IOU)
    return [(d.class_id, d.score, boxed.to_image(d.box.reshape(2, 2)).reshape(4).tolist()) for d in found]


def server_boxes(client: httpx.Client, bgr: np.ndarray) -> list[tuple[int, float, list[float]]]:
    body = {"model_id": "nudenet/1", "image": image_value(bgr, ".png"), "confidence": CONFIDENCE, "iou_threshold": IOU}
    response = client.post("/infer/object_detection", json=body)
    assert response.status_code == 200, response.text
    return [
        (p["class_id"], p["confidence"], [p["x"] - p["width"] / 2, p["y"] - p["height"] / 2,
                                          p["x"] + p["width"] / 2, p["y"] + p["height"] / 2])
        for p in response.json()["predictions"]
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_server_matches_an_independent_decode(client: httpx.Client, session: ort.InferenceSession, case: str) -> None:
    bgr = CASES[case]()
    expected = reference_decode(session, bgr)
    actual = server_boxes(client, bgr)
    assert expected, "the photo should give the reference decode something to compare"
    unmatched = list(actual)
    for class_id, score, box in expected:
        match = next(
            (
                found
                for found in unmatched
                if found[0] == class_id
                and abs(found[1] - score) <= 1e-3
                and max(abs(a - b) for a, b in zip(found[2], box)) <= 1.0
            ),
            None,
        )
        assert match is not None, f"no server box for class {class_id} {score:.4f} {box}"
        unmatched.remove(match)
    assert unmatched == [], f"server boxes the reference decode does not have: {unmatched}"
