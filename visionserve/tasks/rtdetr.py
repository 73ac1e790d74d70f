"""Ultralytics RT-DETR (`head: RTDETRDecoder` in the export's metadata): no anchors, no NMS.

Its one output holds one row per query, the box as cx, cy, w, h normalised to the input, then either
- `[B, Q, 6]`: the score and class of the query × class pairs already ranked inside the graph (Ultralytics 8.4), or
- `[B, Q, 4 + C]`: C class scores already through a sigmoid, each query answering its best class (older exports).
As Ultralytics' own predictor does: the image is stretched to the input (no letterbox), and rows scoring above
the confidence are kept.
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


def is_ranked_layout(probe: np.ndarray, num_classes: int) -> bool:
    """Six columns whose last holds whole class ids: ranked pairs. Only two classes make [4 + C] six wide too,
    and then the last column holds scores, which are not whole numbers."""
    if probe.shape[-1] != 6:
        return False
    classes = probe[..., 5]
    return num_classes != 2 or bool(np.all(classes == np.round(classes)))


class RTDETRDetectionPredictor(ObjectDetectionPredictor):
    def input_spec(self) -> InputSpec:
        return InputSpec(size=self.input_hw, resize=ResizeMode.STRETCH)

    def configure(self, warmup: list[np.ndarray]) -> None:
        shape, classes = warmup[0].shape, len(self.class_names)
        if len(shape) != 3 or shape[2] not in (6, 4 + classes):
            raise ValueError(f"expected an RT-DETR output [B, Q, 6] or [B, Q, {4 + classes}], got {list(shape)}")
        self.ranked = is_ranked_layout(warmup[0][0], classes)

    def detect(self, output: np.ndarray, transform: ImageTransform, params: DetectionParams) -> Detections:
        if self.ranked:
            scores, class_ids = output[:, 4], output[:, 5].astype(np.intp)
        else:
            class_ids = output[:, 4:].argmax(axis=1)
            scores = output[np.arange(len(output)), 4 + class_ids]
        keep = np.flatnonzero((scores > params.confidence) & (class_ids >= 0) & (class_ids < len(self.class_names)))
        keep = keep[np.argsort(-scores[keep], kind="stable")][: params.max_detections]
        input_boxes = normalized_cxcywh_to_input_xyxy(output[keep, :4], self.input_hw)
        empty = np.zeros((len(keep), 0), dtype=np.float32)
        return self.detections(input_boxes, scores[keep], class_ids[keep], empty, transform, params)
