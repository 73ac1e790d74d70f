"""Perspective correction: a 4-point polygon of each image (a road, a table) mapped onto a flat W x H rectangle, the
detections moved into it (`cv2.getPerspectiveTransform` / `cv2.perspectiveTransform`) and, asked for, the image
warped (`cv2.warpPerspective`).

The polygon's points may come in any order: they are taken clockwise from the top-left one and sent to the
rectangle's corners (0, 0), (W-1, 0), (W-1, H-1), (0, H-1). With `extend_perspective_polygon_by_detections_anchor`
the rectangle grows (and shifts) until every detection's anchor point (`ALL`: every box corner) lies inside it;
`extended_transformed_rect_width/height` give its final size. Corrected detections and the warped image live in
the rectangle's coordinates: a new root image.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import AliasChoices, Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, selector,
)  # fmt: skip
from visionserve.workflows.values import Detections, WorkflowImage

MAX_SIDE = 8192  # the most pixels either side of the (extended) rectangle may have
Anchor = Literal["", "CENTER", "BOTTOM_CENTER", "TOP_CENTER", "CENTER_LEFT", "CENTER_RIGHT", "TOP_LEFT", "TOP_RIGHT",
                 "BOTTOM_LEFT", "BOTTOM_RIGHT", "ALL"]  # fmt: skip
_ANCHORS = {  # fractions of the box: (x, y) from its top-left corner
    "CENTER": [(0.5, 0.5)], "BOTTOM_CENTER": [(0.5, 1)], "TOP_CENTER": [(0.5, 0)], "CENTER_LEFT": [(0, 0.5)],
    "CENTER_RIGHT": [(1, 0.5)], "TOP_LEFT": [(0, 0)], "TOP_RIGHT": [(1, 0)], "BOTTOM_LEFT": [(0, 1)],
    "BOTTOM_RIGHT": [(1, 1)], "ALL": [(0, 0), (1, 0), (1, 1), (0, 1)],
}  # fmt: skip
Side = int | selector(kinds.INTEGER)


class PerspectiveCorrectionManifest(BlockManifest):
    type: Literal["roboflow_core/perspective_correction@v1", "PerspectiveCorrection"]
    images: selector(kinds.IMAGE) = Field(validation_alias=AliasChoices("images", "image"))  # type: ignore[valid-type]
    predictions: selector(*kinds.DETECTIONS) | None = None  # type: ignore[valid-type]
    perspective_polygons: list[Any] | selector(kinds.LIST_OF_VALUES, kinds.ZONE)  # type: ignore[valid-type]
    transformed_rect_width: Side = Field(1000, ge=1, le=MAX_SIDE)  # type: ignore[valid-type]
    transformed_rect_height: Side = Field(1000, ge=1, le=MAX_SIDE)  # type: ignore[valid-type]
    extend_perspective_polygon_by_detections_anchor: Anchor | selector(kinds.STRING) = ""  # type: ignore[valid-type]
    warp_image: bool | selector(kinds.BOOLEAN) = False  # type: ignore[valid-type]


def _polygon(value: Any) -> np.ndarray:
    try:
        points = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        points = np.zeros(0)
    if points.shape != (4, 2) or not np.isfinite(points).all():
        raise StepInputError(f"a perspective polygon is 4 [x, y] points, not {value!r}.")
    return points


def polygons_for(value: Any, count: int) -> list[np.ndarray]:
    """One polygon per image: a single polygon for all, or a list of them (one, or one per image)."""
    if np.asarray(value, dtype=object).ndim == 2:
        return [_polygon(value)] * count
    if not isinstance(value, list) or len(value) not in (1, count):
        raise StepInputError(f"perspective_polygons must be one polygon, or one per image ({count}).")
    return [_polygon(item) for item in value] * (count if len(value) == 1 else 1)


def clockwise_from_top_left(points: np.ndarray) -> np.ndarray:
    center = points.mean(axis=0)
    ordered = points[np.argsort(np.arctan2(points[:, 1] - center[1], points[:, 0] - center[0]))]
    return np.roll(ordered, -int(np.argmin(ordered.sum(axis=1))), axis=0)


def _moved(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return points.reshape(0, 2)
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), matrix).reshape(-1, 2)


def _anchors(detections: Detections, anchor: str) -> np.ndarray:
    x1, y1, x2, y2 = detections.xyxy.T
    return np.concatenate([np.stack([x1 + (x2 - x1) * fx, y1 + (y2 - y1) * fy], axis=1) for fx, fy in _ANCHORS[anchor]])


def transform_for(polygon: np.ndarray, width: int, height: int, detections: Detections | None,
                  anchor: str) -> tuple[np.ndarray, int, int]:  # fmt: skip
    """The matrix from the image onto the rectangle (extended to hold the anchors), and the rectangle's size."""
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(clockwise_from_top_left(polygon).astype(np.float32), corners)
    if not anchor or detections is None or len(detections) == 0:
        return matrix, width, height
    moved = _moved(matrix, _anchors(detections, anchor))
    low = np.minimum(moved.min(axis=0), 0)
    high = np.maximum(moved.max(axis=0), [width - 1, height - 1])
    shift = np.array([[1, 0, -low[0]], [0, 1, -low[1]], [0, 0, 1]])
    sides = [math.ceil(side) + 1 for side in high - low]
    if max(sides) > MAX_SIDE:
        raise StepInputError(f"holding every detection would need a {sides[0]}x{sides[1]} rectangle, more than "
                             f"{MAX_SIDE} pixels a side: check the polygon.")  # fmt: skip
    return shift @ matrix, sides[0], sides[1]


def corrected(detections: Detections, matrix: np.ndarray, plane: WorkflowImage) -> Detections:
    """Boxes as the bounding boxes of their moved corners; polygons and keypoints moved point by point."""
    corners = _moved(matrix, _anchors(detections, "ALL")).reshape(4, len(detections), 2)
    xyxy = np.concatenate([corners.min(axis=0), corners.max(axis=0)], axis=1).reshape(len(detections), 4)
    keypoints = None
    if detections.keypoints is not None:
        keypoints = []
        for points in detections.keypoints:
            moved = _moved(matrix, np.array([[k["x"], k["y"]] for k in points], dtype=np.float64))
            keypoints.append([{**k, "x": float(x), "y": float(y)} for k, (x, y) in zip(points, moved)])
    polygons = None if detections.polygons is None else [_moved(matrix, p) for p in detections.polygons]
    return replace(detections, xyxy=xyxy, polygons=polygons, keypoints=keypoints, image=plane,
                   image_size=(plane.width, plane.height))  # fmt: skip


def _side(inputs: StepInputs, name: str) -> int:
    value = inputs[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
        raise StepInputError(f"{name} must be a whole number of pixels from 1 to {MAX_SIDE}, not {value!r}.")
    return value


def correct(step: PerspectiveCorrectionManifest, inputs: StepInputs, polygon: np.ndarray) -> dict[str, Any]:
    image: WorkflowImage = inputs["images"]
    detections: Detections | None = inputs["predictions"]
    anchor = inputs["extend_perspective_polygon_by_detections_anchor"]
    if anchor not in _ANCHORS and anchor != "":
        raise StepInputError(f"unknown anchor {anchor!r}: use one of {', '.join(_ANCHORS)}.")
    matrix, width, height = transform_for(polygon, _side(inputs, "transformed_rect_width"),
                                          _side(inputs, "transformed_rect_height"), detections, anchor)  # fmt: skip
    warped = None
    if inputs["warp_image"] is True:
        warped = cv2.warpPerspective(image.pixels, matrix, (width, height))
    plane = WorkflowImage.input(
        warped if warped is not None else np.broadcast_to(np.zeros(3, np.uint8), (height, width, 3)),
        str(uuid.uuid4()), image.video_metadata,
    )  # fmt: skip
    return {
        "corrected_coordinates": None if detections is None else corrected(detections, matrix, plane),
        "warped_image": plane if warped is not None else None,
        "extended_transformed_rect_width": width, "extended_transformed_rect_height": height,
    }  # fmt: skip


def run(step: PerspectiveCorrectionManifest, batch: list[StepInputs], context: StepContext) -> list[dict[str, Any]]:
    values = [inputs["perspective_polygons"] for inputs in batch]
    if all(value is values[0] for value in values):  # a literal or a parameter: one polygon, or one per image
        polygons = polygons_for(values[0], len(batch))
    else:  # from a batch: each image its own polygon
        polygons = [polygons_for(value, 1)[0] for value in values]
    return [correct(step, inputs, polygon) for inputs, polygon in zip(batch, polygons)]


BLOCK = BlockSpec(
    PerspectiveCorrectionManifest,
    (Output("corrected_coordinates", (kinds.OBJECT_DETECTION, kinds.INSTANCE_SEGMENTATION)),
     Output("warped_image", (kinds.IMAGE,)), Output("extended_transformed_rect_width", (kinds.INTEGER,)),
     Output("extended_transformed_rect_height", (kinds.INTEGER,))),
    run, human_name="Perspective Correction",
)  # fmt: skip
