"""Keypoint detection (YOLOv8/YOLO11-pose): detections plus named keypoints each.

Each row carries, after the class scores, K keypoints of D values: x, y in input pixels, and (D = 3) a visibility
score that the export has already passed through a sigmoid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionserve.models.manifest import Task
from visionserve.models.ultralytics import parse_metadata
from visionserve.tasks.base import Options, ResponseFields, option
from visionserve.tasks.detection import DetectionParams, ObjectDetectionPredictor, parse_detection_options
from visionserve.tasks.preprocess import ImageTransform


@dataclass(frozen=True)
class KeypointParams:
    detection: DetectionParams
    keypoint_confidence: float = 0.0


def parse_keypoint_options(options: Options) -> KeypointParams:
    return KeypointParams(parse_detection_options(options), float(option(options, "keypoint_confidence", 0.0)))


class KeypointsPredictor(ObjectDetectionPredictor):
    task = Task.KEYPOINT_DETECTION

    def extra_values(self, output_shapes: list[tuple[int, ...]]) -> int:
        shape = self.manifest.keypoint_shape or parse_metadata(self.runner.metadata).keypoint_shape
        if shape is None:  # no metadata: what is left of an anchors-last row after boxes and scores
            extra = output_shapes[0][1] - 4 - len(self.class_names)
            values = 3 if extra > 0 and extra % 3 == 0 else 2
            if extra <= 0 or extra % values:
                raise ValueError("cannot tell the keypoint layout; the model has no kpt_shape metadata")
            shape = (extra // values, values)
        self.keypoint_shape = shape
        return shape[0] * shape[1]

    def parse_options(self, options: Options) -> KeypointParams:
        return parse_keypoint_options(options)

    def keypoint_names(self, class_id: int) -> list[str]:
        names = self.manifest.keypoint_names.get(class_id)
        return names if names is not None else [str(index) for index in range(self.keypoint_shape[0])]

    def postprocess(self, outputs: list[np.ndarray], transform: ImageTransform, params: KeypointParams) -> ResponseFields:
        detections = self.detect(outputs[0], transform, params.detection)
        count, values = self.keypoint_shape
        raw = detections.extras.reshape(-1, count, values)
        positions = transform.points_to_original(raw[..., :2])
        confidences = raw[..., 2] if values == 3 else np.ones(raw.shape[:2], dtype=np.float32)
        predictions = self.box_predictions(detections)
        return {"predictions": with_keypoints(predictions, detections.class_ids, positions, confidences,
                                              self.keypoint_names, params.keypoint_confidence)}


def with_keypoints(
    predictions: list[dict[str, Any]],
    class_ids: np.ndarray,
    positions: np.ndarray,
    confidences: np.ndarray,
    names_of: Callable[[int], list[str]],
    keypoint_confidence: float,
) -> list[dict[str, Any]]:
    """Add each prediction's `keypoints` (positions in original pixels, rounded to whole pixels as the reference
    does): the named points of its class whose confidence is above 0 and at least `keypoint_confidence`."""
    for prediction, class_id, points, scores in zip(
        predictions, class_ids.tolist(), np.round(positions).tolist(), confidences.tolist()
    ):
        names = names_of(class_id)
        prediction["keypoints"] = [
            {"x": x, "y": y, "confidence": score, "class_id": index, "class": names[index]}
            for index, ((x, y), score) in enumerate(zip(points[: len(names)], scores))
            if score > 0 and score >= keypoint_confidence
        ]
    return predictions
