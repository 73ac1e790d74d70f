"""Label visualisation: a text box per detection (its class, confidence, index, size, ...) on the palette colour,
placed at `text_position` of its box (by default just above the box's top-left corner)."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import StepInputs, selector
from visionserve.workflows.blocks.drawing import text_box
from visionserve.workflows.blocks.visualization_common import (
    ColorableManifest, detection_colors, text_style, visualization_block, within_reach,
)  # fmt: skip
from visionserve.workflows.errors import StepInputError
from visionserve.workflows.values import Detections

LabelText = Literal["Class", "Confidence", "Class and Confidence", "Index", "Dimensions", "Area", "Tracker Id",
                    "Time In Zone"]  # fmt: skip
# position -> (anchor as fractions of the box, label box offset as fractions of its own size), as the reference
# places labels: TOP_* sit above the box's top edge, BOTTOM_* below its bottom edge, CENTER_LEFT/RIGHT beside it.
POSITIONS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "TOP_LEFT": ((0, 0), (0, -1)), "TOP_CENTER": ((0.5, 0), (-0.5, -1)), "TOP_RIGHT": ((1, 0), (-1, -1)),
    "CENTER_LEFT": ((0, 0.5), (-1, -0.5)), "CENTER": ((0.5, 0.5), (-0.5, -0.5)),
    "CENTER_RIGHT": ((1, 0.5), (0, -0.5)),
    "BOTTOM_LEFT": ((0, 1), (0, 0)), "BOTTOM_CENTER": ((0.5, 1), (-0.5, 0)), "BOTTOM_RIGHT": ((1, 1), (-1, 0)),
    "CENTER_OF_MASS": ((0.5, 0.5), (-0.5, -0.5)),
}  # fmt: skip
TextPosition = Literal[tuple(POSITIONS)]  # type: ignore[valid-type]


class LabelVisualizationManifest(ColorableManifest):
    type: Literal["roboflow_core/label_visualization@v1", "LabelVisualization"]
    text: LabelText | selector(kinds.STRING) = Field(  # type: ignore[valid-type]
        default="Class", description="What each label says."
    )
    text_position: TextPosition | selector(kinds.STRING) = Field(  # type: ignore[valid-type]
        default="TOP_LEFT", description="Where on its box a label is placed."
    )
    text_color: str | selector(kinds.STRING) = Field(  # type: ignore[valid-type]
        default="WHITE", description="Colour of the text: a name (WHITE, BLACK, ...), #RRGGBB or rgb(R, G, B)."
    )
    text_scale: float | selector(kinds.FLOAT) = Field(  # type: ignore[valid-type]
        default=1.0, description="Size of the text."
    )
    text_thickness: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=1, description="Thickness of the text's strokes in pixels."
    )
    text_padding: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=10, description="Space between the text and its box's edges, in pixels."
    )
    border_radius: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=0, description="Corner radius of the label's box, in pixels."
    )


def _areas(detections: Detections) -> list[float]:
    if detections.polygons is None:
        return [float(area) for area in detections.sizes]
    return [cv2.contourArea(points.astype(np.float32)) if len(points) else 0.0 for points in detections.polygons]


def label_texts(detections: Detections, text: object) -> list[str]:
    """What each detection's label says, as the reference words it."""
    count = len(detections)
    if text == "Class":
        return [str(name) for name in detections.class_name]
    if text == "Confidence":
        return [f"{confidence:.2f}" for confidence in detections.confidence]
    if text == "Class and Confidence":
        return [f"{name} {score:.2f}" for name, score in zip(detections.class_name, detections.confidence)]
    if text == "Index":
        return [str(index) for index in range(count)]
    if text == "Dimensions":
        return [f"{int((x1 + x2) / 2)}, {int((y1 + y2) / 2)} {int(x2 - x1)}x{int(y2 - y1)}"
                for x1, y1, x2, y2 in detections.xyxy]  # fmt: skip
    if text == "Area":
        return [str(int(area)) for area in _areas(detections)]
    if text == "Tracker Id":
        ids = detections.tracker_id
        return [str(int(i)) for i in ids] if ids is not None else ["No Tracker ID"] * count
    if text == "Time In Zone":
        times = detections.extra.get("time_in_zone") or [None] * count
        return [f"In zone: {round(t, 2)}s" if t else "In zone: N/A" for t in times]
    if isinstance(text, str) and text in detections.extra:
        return [str(value) if value else "" for value in detections.extra[text]]
    choices = ", ".join(LabelText.__args__)
    raise StepInputError(f"Invalid text {text!r}: use one of {choices} or a detection's field.")


def _anchor(detections: Detections, index: int, position: str, shape: tuple[int, ...]) -> tuple[float, float]:
    if position == "CENTER_OF_MASS" and detections.polygons is not None and len(detections.polygons[index]) > 2:
        moments = cv2.moments(detections.polygons[index].astype(np.float32))
        if moments["m00"]:
            return moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    (fx, fy), _ = POSITIONS[position]
    x1, y1, x2, y2 = (float(v) for v in within_reach(detections.xyxy[index], shape))
    return x1 + fx * (x2 - x1), y1 + fy * (y2 - y1)


def draw_labels(canvas: np.ndarray, detections: Detections, inputs: StepInputs) -> None:
    position = inputs["text_position"]
    if position not in POSITIONS:
        raise StepInputError(f"Unknown text_position {position!r}; use one of {', '.join(POSITIONS)}.")
    texts = label_texts(detections, inputs["text"])
    style = text_style(inputs, "border_radius")
    for index, (text, color) in enumerate(zip(texts, detection_colors(inputs, detections))):
        anchor = _anchor(detections, index, position, canvas.shape)
        text_box(canvas, text, anchor, POSITIONS[position][1], color, style)


BLOCK = visualization_block(LabelVisualizationManifest, draw_labels, "Label Visualization")
