"""Mask visualisation: each instance's mask (its polygon) filled with its palette colour, blended at `opacity`;
pixels outside every mask stay as they were. Detections without masks draw nothing, as in the reference."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import StepInputs, selector
from visionserve.workflows.blocks.visualization_common import (
    ColorableManifest, detection_colors, number, polygon_points, visualization_block,
)  # fmt: skip
from visionserve.workflows.values import Detections


class MaskVisualizationManifest(ColorableManifest):
    type: Literal["roboflow_core/mask_visualization@v1", "MaskVisualization"]
    opacity: float | selector(kinds.FLOAT_ZERO_TO_ONE, kinds.FLOAT) = Field(  # type: ignore[valid-type]
        default=0.5, description="How much of the colour covers the masked pixels: 0 none, 1 all."
    )


def draw_masks(canvas: np.ndarray, detections: Detections, inputs: StepInputs) -> None:
    opacity = number(inputs, "opacity", 0.0, 1.0)
    polygons = polygon_points(detections, canvas.shape)
    if not polygons:
        return
    colors = detection_colors(inputs, detections)
    colored = canvas.copy()
    drawable = [index for index, polygon in enumerate(polygons) if len(polygon)]
    for index in sorted(drawable, key=lambda i: -cv2.contourArea(polygons[i])):  # small ones on top
        cv2.fillPoly(colored, [polygons[index]], colors[index])
    # outside the masks both terms are the same pixel, so it comes out unchanged
    cv2.addWeighted(colored, opacity, canvas, 1.0 - opacity, 0.0, dst=canvas)


BLOCK = visualization_block(MaskVisualizationManifest, draw_masks, "Mask Visualization")
