"""Bounding box visualisation: each box's outline, in its palette colour, optionally with rounded corners."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import StepInputs, selector
from visionserve.workflows.blocks.drawing import rounded_rectangle
from visionserve.workflows.blocks.visualization_common import (
    MAX_THICKNESS, OutlineManifest, box_corners, detection_colors, integer, number, visualization_block,
)  # fmt: skip
from visionserve.workflows.values import Detections


class BoundingBoxVisualizationManifest(OutlineManifest):
    type: Literal["roboflow_core/bounding_box_visualization@v1", "BoundingBoxVisualization"]
    roundness: float | selector(kinds.FLOAT_ZERO_TO_ONE, kinds.FLOAT) = Field(  # type: ignore[valid-type]
        default=0.0, description="Corner rounding, from 0 (square corners) to 1 (half the box's shorter side)."
    )


def draw_boxes(canvas: np.ndarray, detections: Detections, inputs: StepInputs) -> None:
    thickness = integer(inputs, "thickness", 1, MAX_THICKNESS)
    roundness = number(inputs, "roundness", 0.0, 1.0)
    for corners, color in zip(box_corners(detections, canvas.shape), detection_colors(inputs, detections)):
        x1, y1, x2, y2 = (int(v) for v in corners)
        radius = int(min(x2 - x1, y2 - y1) // 2 * roundness)
        rounded_rectangle(canvas, (x1, y1, x2, y2), color, thickness, radius)


BLOCK = visualization_block(BoundingBoxVisualizationManifest, draw_boxes, "Bounding Box Visualization")
