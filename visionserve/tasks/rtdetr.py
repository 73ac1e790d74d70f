"""Ultralytics RT-DETR (`head: RTDETRDecoder` in the export's metadata): no anchors, no NMS.

Its one output is [B, Q, 4 + C]: per query, the box as cx, cy, w, h normalised to the input, then C class scores
that have already been through a sigmoid. As Ultralytics' own predictor does: the image is stretched to the input
(no letterbox), each query answers its best class, and queries scoring above the confidence are kept.
"""

from __future__ import annotations

import numpy as np

from visionserve.models.manifest import ResizeMode
from visionserve.tasks.detection import (
    DetectionParams,
    Detections,
    ObjectDetectionPredictor,
    normalized_cxcywh_to_input_xyxy,
)
from visionserve.tasks.preprocess import ImageTransform, InputSpec


class RTDETRDetectionPredictor(ObjectDetectionPredictor):
    def input_spec(self) -> InputSpec:
        return InputSpec(size=self.input_hw, resize=ResizeMode.STRETCH)

    def configure(self, output_shapes: list[tuple[int, ...]]) -> None:
        shape = output_shapes[0]
        if len(shape) != 3 or shape[2] != 4 + len(self.class_names):
            raise ValueError(f"expected an RT-DETR output [B, Q, {4 + len(self.class_names)}], got {list(shape)}")

    def detect(self, output: np.ndarray, transform: ImageTransform, params: DetectionParams) -> Detections:
        class_scores = output[:, 4:]
        class_ids = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(output)), class_ids]
        keep = np.flatnonzero(scores > params.confidence)
        keep = keep[np.argsort(-scores[keep], kind="stable")][: params.max_detections]
        input_boxes = normalized_cxcywh_to_input_xyxy(output[keep, :4], self.input_hw)
        empty = np.zeros((len(keep), 0), dtype=np.float32)
        return self.detections(input_boxes, scores[keep], class_ids[keep], empty, transform, params)
