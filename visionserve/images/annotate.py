"""Drawing predictions on the image with OpenCV, from the same JSON the client receives."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

# The reference's default palette, as BGR.
_PALETTE_HEX = ("#4892EA", "#00EEC3", "#FE4EF0", "#F4004E", "#FA7200", "#EEEE17", "#90FF00", "#78C1D2", "#8C29FF")
PALETTE = tuple((int(h[5:7], 16), int(h[3:5], 16), int(h[1:3], 16)) for h in _PALETTE_HEX)
JPEG_QUALITY = 90
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _color(class_id: object) -> tuple[int, int, int]:
    return PALETTE[class_id % len(PALETTE)] if isinstance(class_id, int) else PALETTE[0]


def _label(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], stroke: int) -> None:
    scale = 0.4 + 0.1 * stroke
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    top = max(0, y - height - baseline - 2)
    cv2.rectangle(canvas, (x, top), (x + width + 4, top + height + baseline + 2), color, cv2.FILLED)
    cv2.putText(canvas, text, (x + 2, top + height + 1), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _draw_object(canvas: np.ndarray, prediction: Mapping[str, Any], stroke: int, labels: bool) -> None:
    color = _color(prediction.get("class_id"))
    points = prediction.get("points") or []
    if points:
        polygon = np.array([[point["x"], point["y"]] for point in points], dtype=np.float32)
        cv2.polylines(canvas, [np.round(polygon).astype(np.int32)], True, color, stroke, cv2.LINE_AA)
    x, y, width, height = (prediction.get(key) for key in ("x", "y", "width", "height"))
    corner = (0, 0)
    if None not in (x, y, width, height):
        corner = (int(round(x - width / 2)), int(round(y - height / 2)))
        if "angle" not in prediction:  # oriented boxes are drawn by their corner points only
            opposite = (int(round(x + width / 2)), int(round(y + height / 2)))
            cv2.rectangle(canvas, corner, opposite, color, stroke)
    elif len(points):
        corner = (int(min(p["x"] for p in points)), int(min(p["y"] for p in points)))
    for keypoint in prediction.get("keypoints") or []:
        center = (int(round(keypoint["x"])), int(round(keypoint["y"])))
        cv2.circle(canvas, center, max(2, stroke + 1), color, cv2.FILLED, cv2.LINE_AA)
    if labels:
        _label(canvas, f"{prediction.get('class', '')} {prediction.get('confidence', 0.0):.2f}", *corner, color, stroke)


def _blend_classes(canvas: np.ndarray, predictions: Mapping[str, Any]) -> None:
    """A semantic class map, each class in its palette colour at half opacity; pixels of no class (255) and of a
    class named background are left as they are."""
    encoded = np.frombuffer(base64.b64decode(predictions["segmentation_mask"]), dtype=np.uint8)
    classes = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if classes.shape[:2] != canvas.shape[:2]:
        classes = cv2.resize(classes, (canvas.shape[1], canvas.shape[0]), interpolation=cv2.INTER_NEAREST)
    colors = np.array([_color(index) for index in range(256)], dtype=np.uint16)
    painted = np.ones(256, dtype=bool)
    painted[255] = False
    for index, name in (predictions.get("class_map") or {}).items():
        if str(index).isdigit() and int(index) < 255 and str(name).lower() == "background":
            painted[int(index)] = False
    where = painted[classes]
    canvas[where] = ((canvas[where].astype(np.uint16) + colors[classes[where]]) // 2).astype(np.uint8)


def draw(image: np.ndarray, response: Mapping[str, Any], stroke: int = 1, labels: bool = False) -> np.ndarray:
    """A copy of the image with the response's boxes, polygons and keypoints (classes for classifiers, a colour
    per class for semantic maps) drawn: the one drawing of `format=image` answers and of annotated stream outputs."""
    canvas = image.copy()
    stroke = min(max(int(stroke), 1), 25)
    predictions = response.get("predictions")
    if isinstance(predictions, dict) and "segmentation_mask" in predictions:
        _blend_classes(canvas, predictions)
    elif isinstance(predictions, list) and "top" not in response:
        for prediction in predictions:
            _draw_object(canvas, prediction, stroke, labels)
    elif "top" in response:
        _label(canvas, f"{response['top']} {response.get('confidence', 0.0):.2f}", 0, 30, PALETTE[0], stroke)
    elif isinstance(predictions, dict):
        _label(canvas, ", ".join(response.get("predicted_classes", [])), 0, 30, PALETTE[0], stroke)
    return canvas


def annotate(image: np.ndarray, response: Mapping[str, Any], stroke: int = 1, labels: bool = False) -> bytes:
    """A JPEG of the image with the response drawn on it (`draw`)."""
    ok, jpeg = cv2.imencode(".jpg", draw(image, response, stroke, labels), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes()
