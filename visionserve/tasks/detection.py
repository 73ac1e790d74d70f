"""Object detection: candidates → NMS → boxes in original pixels → the reference's prediction objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionserve.models.manifest import Task
from visionserve.models.ultralytics import parse_metadata
from visionserve.tasks.base import Options, Predictor, ResponseFields, confidence_option, option
from visionserve.tasks.nms import batched_nms
from visionserve.tasks.preprocess import ImageTransform
from visionserve.tasks.yolo_outputs import decode_candidates, detect_layout

DEFAULT_CONFIDENCE = 0.4


@dataclass(frozen=True)
class DetectionParams:
    confidence: float = DEFAULT_CONFIDENCE
    iou_threshold: float = 0.3
    max_detections: int = 300
    max_candidates: int = 3000
    class_agnostic_nms: bool = False
    class_filter: frozenset[str] | None = None


@dataclass(frozen=True)
class Detections:
    """Kept detections of one image, best first."""

    input_boxes: np.ndarray  # [n, 4] xyxy in network-input pixels
    boxes: np.ndarray  # [n, 4] xyxy in original pixels, clipped and rounded to whole pixels
    scores: np.ndarray
    class_ids: np.ndarray
    extras: np.ndarray  # per-box values after the class scores (mask coefficients, keypoints)

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, index: np.ndarray) -> Detections:
        return Detections(*(field[index] for field in self._fields()))

    def _fields(self) -> tuple[np.ndarray, ...]:
        return self.input_boxes, self.boxes, self.scores, self.class_ids, self.extras


def normalized_cxcywh_to_input_xyxy(boxes: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """[n, 4] cx, cy, w, h in 0..1 of the input (DETR-style heads) → x1, y1, x2, y2 in input pixels."""
    height, width = input_hw
    centre, half = boxes[:, :2], boxes[:, 2:4] / 2
    scale = np.array([width, height, width, height], dtype=np.float32)
    return np.concatenate([centre - half, centre + half], axis=1) * scale


def parse_detection_options(options: Options) -> DetectionParams:
    class_filter = options.get("class_filter")
    return DetectionParams(
        confidence=confidence_option(options, DEFAULT_CONFIDENCE),
        iou_threshold=float(option(options, "iou_threshold", 0.3)),
        max_detections=int(option(options, "max_detections", 300)),
        max_candidates=max(1, int(option(options, "max_candidates", 3000))),
        class_agnostic_nms=bool(option(options, "class_agnostic_nms", False)),
        class_filter=frozenset(class_filter) if class_filter else None,
    )


class ObjectDetectionPredictor(Predictor):
    task = Task.OBJECT_DETECTION

    def configure(self, warmup: list[np.ndarray]) -> None:
        metadata = parse_metadata(self.runner.metadata)
        extra = self.extra_values([output.shape for output in warmup])
        self.layout = detect_layout(warmup[0].shape, len(self.class_names), extra, metadata.end_to_end)
        self.one_image_per_pass = metadata.nms_first_image_only

    def extra_values(self, output_shapes: list[tuple[int, ...]]) -> int:
        """Values after the class scores in each output row: none for plain detection."""
        return 0

    def parse_options(self, options: Options) -> DetectionParams:
        return parse_detection_options(options)

    def detect(self, output: np.ndarray, transform: ImageTransform, params: DetectionParams) -> Detections:
        candidates = decode_candidates(
            output, self.layout, len(self.class_names), params.confidence, params.max_candidates
        )
        if candidates.suppressed:
            keep = np.argsort(-candidates.scores, kind="stable")[: params.max_detections]
        else:
            keep = batched_nms(
                candidates.boxes,
                candidates.scores,
                candidates.class_ids,
                params.iou_threshold,
                params.max_detections,
                params.class_agnostic_nms,
            )
        return self.detections(
            candidates.boxes[keep], candidates.scores[keep], candidates.class_ids[keep], candidates.extras[keep],
            transform, params,
        )

    def detections(
        self,
        input_boxes: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        extras: np.ndarray,
        transform: ImageTransform,
        params: DetectionParams,
    ) -> Detections:
        """Kept boxes (xyxy in input pixels, best first) → original pixels, then the request's class filter."""
        detections = Detections(
            input_boxes=input_boxes,
            boxes=np.round(transform.boxes_to_original(input_boxes)),
            scores=scores,
            class_ids=class_ids,
            extras=extras,
        )
        if params.class_filter is not None:
            names = [self.class_name(int(class_id)) for class_id in detections.class_ids]
            mask = np.array([name in params.class_filter for name in names], dtype=bool)
            detections = detections.select(np.flatnonzero(mask))
        return detections

    def box_predictions(self, detections: Detections) -> list[dict[str, Any]]:
        """The reference's detection objects: centre, size, confidence, class, class_id, detection_id."""
        predictions = []
        for (x1, y1, x2, y2), score, class_id in zip(
            detections.boxes.tolist(), detections.scores.tolist(), detections.class_ids.tolist()
        ):
            predictions.append(
                {
                    "x": (x1 + x2) / 2,
                    "y": (y1 + y2) / 2,
                    "width": x2 - x1,
                    "height": y2 - y1,
                    "confidence": score,
                    "class": self.class_name(class_id),
                    "class_id": class_id,
                    "detection_id": str(uuid.uuid4()),
                }
            )
        return predictions

    def postprocess(
        self, outputs: list[np.ndarray], transform: ImageTransform, params: DetectionParams
    ) -> ResponseFields:
        return {"predictions": self.box_predictions(self.detect(outputs[0], transform, params))}
