"""RF-DETR (Roboflow's DETR-family detector and segmenter): no anchors, no NMS.

What its ONNX exports hold, by output name: `dets` [B, Q, 4] boxes as cx, cy, w, h normalised to the input;
`labels` [B, Q, C'] class logits; `masks` [B, Q, h, w] mask logits at a quarter of the input (segmentation).
Outputs are matched by name: with three classes the logits' last axis is 4, the same as the boxes'.

As rfdetr's own `predict` does: RGB scaled to 0..1, ImageNet mean/std, the float image stretched to the square
input (bilinear, never rounded to bytes); sigmoid over every query × class, the best scores win (no NMS); a
mask is its logits resampled to the original image, positive where the logit is above 0.

Class slots: a custom model trained on N classes has N + 1 logits, the last one unused; COCO checkpoints have
91, indexed by COCO's sparse category ids (1 = person). Roboflow packages may name a background class
`background_class83422`, which is never answered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from visionserve.models.manifest import Normalization, Task
from visionserve.tasks.base import Options, ResponseFields
from visionserve.tasks.detection import (
    DetectionParams,
    Detections,
    ObjectDetectionPredictor,
    normalized_cxcywh_to_input_xyxy,
)
from visionserve.tasks.masks import MaskPatch, charge_mask_pixels, largest_polygon
from visionserve.tasks.preprocess import ImageTransform, InputSpec
from visionserve.tasks.segmentation import (
    SegmentationParams,
    parse_segmentation_options,
    polygon_field,
    rle_field,
    with_masks,
)

BOXES, LOGITS, MASKS = "dets", "labels", "masks"
BACKGROUND_CLASS = "background_class83422"
# COCO's 80 category ids, in the order of the usual 80 class names.
COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def class_slots(logit_count: int, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Map each logit slot to an index into the answered class names (-1: never answered), and those names."""
    if BACKGROUND_CLASS in names and len(names) in (logit_count, logit_count - 1):
        answered = np.array([name != BACKGROUND_CLASS for name in names])
        slots = np.full(logit_count, -1, dtype=np.intp)
        slots[: len(names)][answered] = np.arange(answered.sum())
        return slots, [name for name in names if name != BACKGROUND_CLASS]
    if logit_count in (len(names), len(names) + 1):  # the extra slot of a custom model is never answered
        slots = np.arange(logit_count, dtype=np.intp)
        slots[len(names) :] = -1
        return slots, names
    if logit_count == 91 and len(names) == len(COCO_CATEGORY_IDS):
        slots = np.full(logit_count, -1, dtype=np.intp)
        slots[COCO_CATEGORY_IDS] = np.arange(len(COCO_CATEGORY_IDS))
        return slots, names
    raise ValueError(
        f"the model has {logit_count} class logits but {len(names)} class names are given; an RF-DETR model "
        f"trained on N classes has N + 1 logits ({logit_count - 1} names), a COCO one 91 (80 names)"
    )


def sigmoid(values: np.ndarray) -> np.ndarray:
    """RF-DETR's logits as scores."""
    return 1.0 / (1.0 + np.exp(-values))


def output_index(output_names: list[str], name: str) -> int:
    if name not in output_names:
        raise ValueError(f"an RF-DETR model has outputs named {BOXES!r} and {LOGITS!r}; this one has {output_names}")
    return output_names.index(name)


class RFDETRDetectionPredictor(ObjectDetectionPredictor):
    task = Task.OBJECT_DETECTION

    def input_spec(self) -> InputSpec:
        return InputSpec(
            size=self.input_hw,
            resize=self.manifest.resize,  # stretch, unless a Roboflow package asks for a letterbox
            pad_value=None,  # Roboflow pads after normalising: black there is the mean colour
            normalization=self.manifest.normalization or Normalization.imagenet(),
            float_resize=True,
            ratio_gain=True,  # the reference maps a letterbox back by its ratio (rfdetr itself only stretches)
        )

    @property
    def class_names(self) -> list[str]:
        return self.answered_names

    def configure(self, warmup: list[np.ndarray]) -> None:
        names = self.runner.output_names
        self.boxes_at, self.logits_at = output_index(names, BOXES), output_index(names, LOGITS)
        boxes, logits = warmup[self.boxes_at].shape, warmup[self.logits_at].shape
        if len(boxes) != 3 or boxes[2] != 4 or len(logits) != 3 or logits[1] != boxes[1]:
            raise ValueError(f"expected {BOXES} [B, Q, 4] and {LOGITS} [B, Q, C], got {list(boxes)} and {list(logits)}")
        self.slots, self.answered_names = class_slots(logits[2], self.manifest.class_names)

    def detect_queries(
        self, outputs: list[np.ndarray], transform: ImageTransform, params: DetectionParams
    ) -> Detections:
        """The best query × class pairs above the confidence; each detection carries its query as its extra value,
        so masks follow it through the class filter."""
        logits = outputs[self.logits_at]
        answered = self.slots >= 0
        scores = sigmoid(logits[:, answered])
        flat = scores.ravel()
        candidates = np.flatnonzero(flat > params.confidence)
        if candidates.size > params.max_detections:
            candidates = candidates[np.argpartition(-flat[candidates], params.max_detections - 1)[: params.max_detections]]
        candidates = candidates[np.argsort(-flat[candidates], kind="stable")]
        queries, columns = np.divmod(candidates, scores.shape[1])
        input_boxes = normalized_cxcywh_to_input_xyxy(outputs[self.boxes_at][queries], self.input_hw)
        class_ids = self.slots[answered][columns]
        return self.detections(input_boxes, flat[candidates], class_ids, queries[:, None], transform, params)

    def postprocess(self, outputs: list[np.ndarray], transform: ImageTransform, params: DetectionParams) -> ResponseFields:
        return {"predictions": self.box_predictions(self.detect_queries(outputs, transform, params))}


class RFDETRSegmentationPredictor(RFDETRDetectionPredictor):
    task = Task.INSTANCE_SEGMENTATION

    def configure(self, warmup: list[np.ndarray]) -> None:
        super().configure(warmup)
        self.masks_at = output_index(self.runner.output_names, MASKS)
        shape = warmup[self.masks_at].shape
        if len(shape) != 4 or shape[1] != warmup[self.boxes_at].shape[1]:
            raise ValueError(f"expected {MASKS} [B, Q, h, w], got {list(shape)}")

    def parse_options(self, options: Options) -> SegmentationParams:
        return parse_segmentation_options(options)

    def postprocess(self, outputs: list[np.ndarray], transform: ImageTransform, params: SegmentationParams) -> ResponseFields:
        detections = self.detect_queries(outputs, transform, params.detection)
        predictions = self.box_predictions(detections)
        height, width = transform.image_height, transform.image_width
        masks: list[dict[str, Any] | None] = []
        planes = outputs[self.masks_at]
        sampler = MaskSampler.for_image(transform, self.input_hw, planes.shape[1:])
        for query in detections.extras[:, 0].tolist():
            patch = sampler.patch(planes[query])
            if params.mask_format == "rle":
                masks.append(rle_field(patch, height, width) if patch.mask.any() else None)
            else:
                masks.append(polygon_field(largest_polygon(patch)))
        return {"predictions": with_masks(predictions, masks)}


@dataclass(frozen=True)
class MaskAxis:
    """One axis of the map from original pixels to mask logits: original = input * scale + shift, and
    mask = input * mask_per_input."""

    mask_per_input: float
    scale: float
    shift: float
    image_size: int
    mask_size: int

    def window(self, first: int, last: int) -> slice:
        """Original pixels whose centres lie between the centres of mask cells `first` and `last`."""
        start = (first + 0.5) / self.mask_per_input * self.scale + self.shift
        stop = (last + 0.5) / self.mask_per_input * self.scale + self.shift
        return slice(max(0, math.floor(start)), max(0, min(self.image_size, math.ceil(stop) + 1)))

    def weights(self) -> np.ndarray:
        """[image_size, mask_size]: each pixel's bilinear weights over the mask cells, pixel centres aligned and
        sources clamped at the edges as torch's interpolate (align_corners=False) has them."""
        pixels = np.arange(self.image_size)
        source = np.maximum((pixels + 0.5 - self.shift) / self.scale * self.mask_per_input - 0.5, 0.0)
        lower = np.floor(source).astype(np.intp)
        weight = (source - lower).astype(np.float32)
        lower = np.minimum(lower, self.mask_size - 1)
        matrix = np.zeros((self.image_size, self.mask_size), dtype=np.float32)
        np.add.at(matrix, (pixels, lower), 1 - weight)
        np.add.at(matrix, (pixels, np.minimum(lower + 1, self.mask_size - 1)), weight)
        return matrix


@dataclass(frozen=True)
class MaskSampler:
    """Resamples one image's mask logits to its original pixels: rows @ logits @ columns.T, per window."""

    x_axis: MaskAxis
    y_axis: MaskAxis
    rows: np.ndarray  # [image height, mask height]
    columns: np.ndarray  # [image width, mask width]

    @classmethod
    def for_image(cls, transform: ImageTransform, input_hw: tuple[int, int], mask_hw: tuple[int, int]) -> MaskSampler:
        (scale_x, shift_x), (scale_y, shift_y) = transform.input_to_original_axes()
        x_axis = MaskAxis(mask_hw[1] / input_hw[1], scale_x, shift_x, transform.image_width, mask_hw[1])
        y_axis = MaskAxis(mask_hw[0] / input_hw[0], scale_y, shift_y, transform.image_height, mask_hw[0])
        return cls(x_axis, y_axis, y_axis.weights(), x_axis.weights())

    def patch(self, logits: np.ndarray) -> MaskPatch:
        """One query's mask at the original image's resolution, positive where the resampled logit is above 0.

        Only the window that can be positive is resampled: a sample mixes the two logits around it on each axis,
        so pixels beyond the neighbours of the outermost positive logits stay negative."""
        positive = np.argwhere(logits > 0)
        if positive.size == 0:
            return MaskPatch(np.zeros((0, 0), dtype=bool), 0, 0)
        (first_row, first_column), (last_row, last_column) = positive.min(axis=0) - 1, positive.max(axis=0) + 1
        rows, columns = self.y_axis.window(first_row, last_row), self.x_axis.window(first_column, last_column)
        charge_mask_pixels(max(0, rows.stop - rows.start) * max(0, columns.stop - columns.start))
        sampled = self.rows[rows] @ logits.astype(np.float32) @ self.columns[columns].T
        return MaskPatch(sampled > 0, columns.start, rows.start)
