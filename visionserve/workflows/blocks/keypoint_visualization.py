"""Keypoint visualisation: each detection's keypoints as filled dots (`vertex`), their names on boxes
(`vertex_label`), or lines between them (`edge`: the pairs in `edges`, 1-based keypoint indices as the reference
takes them; by default the COCO skeleton for 17-point models, else each keypoint joined to the next)."""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import StepInputs, selector
from visionserve.workflows.blocks.drawing import BGR, parse_color, text_box
from visionserve.workflows.blocks.visualization_common import (
    MAX_THICKNESS, VisualizationManifest, integer, text_style, visualization_block, within_reach,
)  # fmt: skip
from visionserve.workflows.errors import StepInputError
from visionserve.workflows.values import Detections

COCO_SKELETON = ((1, 2), (1, 3), (2, 3), (2, 4), (3, 5), (4, 6), (5, 7), (6, 7), (6, 8), (6, 12), (7, 9), (7, 13),
                 (8, 10), (9, 11), (12, 13), (12, 14), (13, 15), (14, 16), (15, 17))  # fmt: skip


class KeypointVisualizationManifest(VisualizationManifest):
    type: Literal["roboflow_core/keypoint_visualization@v1", "KeypointVisualization"]
    predictions: selector(kinds.KEYPOINT_DETECTION) = Field(  # type: ignore[valid-type]
        description="Keypoint detections, from a keypoint detection model step."
    )
    annotator_type: Literal["edge", "vertex", "vertex_label"] = Field(
        default="edge", description="Lines between keypoints (edge), dots (vertex) or named dots (vertex_label)."
    )
    color: str | selector(kinds.STRING) = Field(  # type: ignore[valid-type]
        default="#A351FB", description="Colour of dots, lines and label boxes: a name, #RRGGBB or rgb(R, G, B)."
    )
    text_color: str | selector(kinds.STRING) = Field(  # type: ignore[valid-type]
        default="black", description="vertex_label: text colour."
    )
    text_scale: float | selector(kinds.FLOAT) = Field(  # type: ignore[valid-type]
        default=0.5, description="vertex_label: text size."
    )
    text_thickness: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=1, description="vertex_label: text stroke thickness in pixels."
    )
    text_padding: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=10, description="vertex_label: space around the text in pixels."
    )
    thickness: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=2, description="edge: line thickness in pixels."
    )
    radius: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=10, description="vertex: dot radius; vertex_label: label corner radius, in pixels."
    )
    edges: list | selector(kinds.LIST_OF_VALUES) | None = Field(  # type: ignore[valid-type]
        default=None, description="edge: pairs of 1-based keypoint indices to join, e.g. [[1, 2], [2, 3]]."
    )


def _points(keypoints: list[dict[str, Any]], shape: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Keypoint index -> pixel, leaving out the (0, 0) slots models use for keypoints they did not find."""
    found = [point for point in keypoints if point["x"] != 0 or point["y"] != 0]
    pixels = within_reach(np.array([[point["x"], point["y"]] for point in found]), shape).astype(int)
    return {int(point["class_id"]): (int(x), int(y)) for point, (x, y) in zip(found, pixels)}


def _edges(requested: object, count: int) -> list[tuple[int, int]]:
    if requested is None:
        return list(COCO_SKELETON) if count == 17 else [(i, i + 1) for i in range(1, count)]
    pairs = requested if isinstance(requested, list) else None
    if pairs is None or not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(
            isinstance(i, int) and not isinstance(i, bool) for i in p) for p in pairs):  # fmt: skip
        raise StepInputError(f"edges must be a list of pairs of keypoint indices, not {requested!r}.")
    return [(int(a), int(b)) for a, b in pairs]


def _draw_vertices(canvas: np.ndarray, keypoints: list[dict[str, Any]], color: BGR, inputs: StepInputs) -> None:
    radius = integer(inputs, "radius", 1, MAX_THICKNESS)
    for point in _points(keypoints, canvas.shape).values():
        cv2.circle(canvas, point, radius, color, -1, cv2.LINE_AA)


def _draw_edges(canvas: np.ndarray, keypoints: list[dict[str, Any]], color: BGR, inputs: StepInputs) -> None:
    thickness = integer(inputs, "thickness", 1, MAX_THICKNESS)
    points = _points(keypoints, canvas.shape)
    count = max((int(point["class_id"]) + 1 for point in keypoints), default=0)
    for a, b in _edges(inputs["edges"], count):
        if a - 1 in points and b - 1 in points:
            cv2.line(canvas, points[a - 1], points[b - 1], color, thickness, cv2.LINE_AA)


def _draw_vertex_labels(
    canvas: np.ndarray, keypoints: list[dict[str, Any]], color: BGR, inputs: StepInputs
) -> None:
    names = {int(point["class_id"]): str(point.get("class", point["class_id"])) for point in keypoints}
    style = text_style(inputs, "radius")
    for index, point in _points(keypoints, canvas.shape).items():
        text_box(canvas, names[index], point, (-0.5, -0.5), color, style)


DRAWERS = {"vertex": _draw_vertices, "edge": _draw_edges, "vertex_label": _draw_vertex_labels}


def draw_keypoints(canvas: np.ndarray, detections: Detections, inputs: StepInputs) -> None:
    if detections.keypoints is None:
        raise StepInputError("predictions have no keypoints: use a keypoint detection model's predictions.")
    color = parse_color(inputs["color"])
    for keypoints in detections.keypoints:
        DRAWERS[inputs["annotator_type"]](canvas, keypoints, color, inputs)


BLOCK = visualization_block(KeypointVisualizationManifest, draw_keypoints, "Keypoint Visualization")
