"""Polygon visualisation: each instance's mask outline (its polygon) in its palette colour. Detections without
masks draw nothing, as in the reference."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from visionserve.workflows.blocks.base import StepInputs
from visionserve.workflows.blocks.visualization_common import (
    MAX_THICKNESS, OutlineManifest, detection_colors, integer, polygon_points, visualization_block,
)  # fmt: skip
from visionserve.workflows.values import Detections


class PolygonVisualizationManifest(OutlineManifest):
    type: Literal["roboflow_core/polygon_visualization@v1", "PolygonVisualization"]


def draw_polygons(canvas: np.ndarray, detections: Detections, inputs: StepInputs) -> None:
    thickness = integer(inputs, "thickness", 1, MAX_THICKNESS)
    polygons = polygon_points(detections, canvas.shape)
    if polygons:
        for polygon, color in zip(polygons, detection_colors(inputs, detections)):
            if len(polygon):
                cv2.polylines(canvas, [polygon], True, color, thickness)


BLOCK = visualization_block(PolygonVisualizationManifest, draw_polygons, "Polygon Visualization")
