"""Blur visualisation: each box's pixels replaced by their box-filter average over `kernel_size` pixels (to hide
faces, plates), every other pixel left as it was."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import StepInputs, selector
from visionserve.workflows.blocks.visualization_common import (
    VisualizationManifest, box_corners, integer, visualization_block,
)  # fmt: skip
from visionserve.workflows.values import Detections

MAX_KERNEL_SIZE = 1001


class BlurVisualizationManifest(VisualizationManifest):
    type: Literal["roboflow_core/blur_visualization@v1", "BlurVisualization"]
    kernel_size: int | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        default=15, description="Size of the averaging kernel used for blurring, in pixels."
    )


def draw_blur(canvas: np.ndarray, detections: Detections, inputs: StepInputs) -> None:
    kernel = integer(inputs, "kernel_size", 1, MAX_KERNEL_SIZE)
    height, width = canvas.shape[:2]
    for x1, y1, x2, y2 in box_corners(detections, canvas.shape).clip(0, [width, height, width, height]):
        if x2 > x1 and y2 > y1:
            region = canvas[y1:y2, x1:x2]
            region[...] = cv2.blur(region, (kernel, kernel))


BLOCK = visualization_block(BlurVisualizationManifest, draw_blur, "Blur Visualization")
