"""Keypoint detection (YOLOv8/YOLO11-pose): detections plus named keypoints each.

Each row carries, after the class scores, K keypoints of D values: x, y in input pixels, and (D = 3) a visibility
score that the export has already passed through a sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        return KeypointParams(parse_detection_options(options), float(option(options, "keypoint_confidence", 0.0)))

    def keypoint_names(self, class_id: int) -> list[str]:
        names = self.manifest.keypoint_names.get(class_id)
        return names if names is not None else [str(index) for index in range(self.keypoint_shape[0])]

    def postprocess(self, outputs: list[np.ndarray], transform: ImageTransform, params: KeypointParams) -> ResponseFields:
        detections = self.detect(outputs[0], transform, params.detection)
        count, values = self.keypoint_shape
        raw = detections.extras.reshape(-1, count, values)
        positions = np.round(transform.points_to_original(raw[..., :2])).tolist()
        confidences = (raw[..., 2] if values == 3 else np.ones(raw.shape[:2], dtype=np.float32)).tolist()
        predictions = self.box_predictions(detections)
        for prediction, class_id, points, scores in zip(predictions, detections.class_ids.tolist(), positions, confidences):
            names = self.keypoint_names(class_id)
            prediction["keypoints"] = [
                {"x": x, "y": y, "confidence": score, "class_id": index, "class": names[index]}
                for index, ((x, y), score) in enumerate(zip(points[: len(names)], scores))
                if score > 0 and score >= params.keypoint_confidence
            ]
        return {"predictions": predictions}
