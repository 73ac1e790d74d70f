"""The server's boxes equal a straightforward, independent decode of the same ONNX model's output.

The reference decode below shares no code with the server: its own letterbox (cv2.copyMakeBorder), its own
transpose and thresholding, OpenCV's NMS, and a single-gain mapping back to the image.
"""

from __future__ import annotations

import ast

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import image_value, photo
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
    meta = session.get_modelmeta().custom_metadata_map
    side = ast.literal_eval(meta["imgsz"])[0]
    num_classes = len(ast.literal_eval(meta["names"]))
    height, width = bgr.shape[:2]
    gain = min(side / height, side / width)
    new_w, new_h = int(round(width * gain)), int(round(height * gain))
    pad_w, pad_h = (side - new_w) / 2, (side - new_h) / 2
    top, bottom = int(round(pad_h - 0.1)), int(round(pad_h + 0.1))
    left, right = int(round(pad_w - 0.1)), int(round(pad_w + 0.1))
    resized = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    boxed = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    tensor = (boxed[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)) / 255.0
    rows = session.run(None, {session.get_inputs()[0].name: tensor})[0][0].T  # [N, 4 + C]
    scores = rows[:, 4 : 4 + num_classes]
    class_ids, best = scores.argmax(1), scores.max(1)
    keep = best >= CONFIDENCE
    rows, class_ids, best = rows[keep], class_ids[keep], best[keep]
    xywh = [[cx - w / 2, cy - h / 2, w, h] for cx, cy, w, h in rows[:, :4].tolist()]
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, best.tolist(), class_ids.tolist(), CONFIDENCE, IOU)).reshape(-1)
    detections = []
    for index in kept:
        x, y, w, h = xywh[index]
        corners = [(x - left) / gain, (y - top) / gain, (x + w - left) / gain, (y + h - top) / gain]
        corners = [min(max(value, 0.0), limit) for value, limit in zip(corners, [width, height] * 2)]
        detections.append((int(class_ids[index]), float(best[index]), corners))
    return detections


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
