"""Oriented bounding boxes (YOLO-OBB), served on `/infer/obb` (the reference has no such route).

Each row is cx, cy, w, h, C class scores and the angle in radians ([-π/4, 3π/4) as exported); end-to-end exports
give cx, cy, w, h, score, class, angle. Boxes are suppressed with ProbIoU, as Ultralytics does.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np

from visionserve.models.manifest import Task
from visionserve.models.ultralytics import parse_metadata
from visionserve.tasks.base import Options, Predictor, ResponseFields
from visionserve.tasks.detection import DetectionParams, parse_detection_options
from visionserve.tasks.nms import rotated_nms
from visionserve.tasks.preprocess import ImageTransform
from visionserve.tasks.yolo_outputs import OutputLayout, detect_layout, score_rows


def corners(boxes: np.ndarray) -> np.ndarray:
    """[n, 5] (cx, cy, w, h, angle) → [n, 4, 2] corner points, in order around the box."""
    cos, sin = np.cos(boxes[:, 4]), np.sin(boxes[:, 4])
    along = np.stack([boxes[:, 2] / 2 * cos, boxes[:, 2] / 2 * sin], axis=1)
    across = np.stack([-boxes[:, 3] / 2 * sin, boxes[:, 3] / 2 * cos], axis=1)
    centre = boxes[:, :2]
    return np.stack([centre + along + across, centre + along - across, centre - along - across, centre - along + across], 1)


class OrientedDetectionPredictor(Predictor):
    task = Task.ORIENTED_OBJECT_DETECTION

    def configure(self, warmup: list[np.ndarray]) -> None:
        end_to_end = parse_metadata(self.runner.metadata).end_to_end
        self.layout = detect_layout(warmup[0].shape, len(self.class_names), 1, end_to_end)
        if self.layout is OutputLayout.OBJECTNESS:
            raise ValueError("oriented boxes need an anchors-last or end-to-end output")

    def parse_options(self, options: Options) -> DetectionParams:
        return parse_detection_options(options)

    def postprocess(self, outputs: list[np.ndarray], transform: ImageTransform, params: DetectionParams) -> ResponseFields:
        classes = len(self.class_names)
        scored = score_rows(outputs[0], self.layout, classes, params.confidence, params.max_candidates)
        angle_column = 4 + classes if self.layout is OutputLayout.ANCHORS_LAST else 6
        boxes = np.concatenate([scored.rows[:, :4], scored.rows[:, angle_column : angle_column + 1]], axis=1)
        if self.layout is OutputLayout.END_TO_END:
            keep = np.argsort(-scored.scores, kind="stable")[: params.max_detections]
        else:
            keep = rotated_nms(
                boxes, scored.scores, scored.class_ids, params.iou_threshold, params.max_detections,
                params.class_agnostic_nms,
            )  # fmt: skip
        points = transform.points_to_original(corners(boxes[keep]), clip=False)
        predictions = []
        for quad, score, class_id in zip(points.tolist(), scored.scores[keep].tolist(), scored.class_ids[keep].tolist()):
            name = self.class_name(class_id)
            if params.class_filter is not None and name not in params.class_filter:
                continue
            predictions.append(self._prediction(quad, score, class_id, name))
        return {"predictions": predictions}

    @staticmethod
    def _prediction(quad: list[list[float]], score: float, class_id: int, name: str) -> dict[str, Any]:
        (x0, y0), (x1, y1), _, (x3, y3) = quad
        return {
            "x": sum(point[0] for point in quad) / 4,
            "y": sum(point[1] for point in quad) / 4,
            "width": math.hypot(x0 - x3, y0 - y3),
            "height": math.hypot(x0 - x1, y0 - y1),
            "angle": math.atan2(y0 - y3, x0 - x3),
            "confidence": score,
            "class": name,
            "class_id": class_id,
            "detection_id": str(uuid.uuid4()),
            "points": [{"x": x, "y": y} for x, y in quad],
        }
