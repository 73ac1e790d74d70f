"""Instance segmentation (YOLOv8/YOLO11-seg): detections plus a polygon or an RLE mask each.

Resolution by `mask_decode_mode`, as the reference defines it: `accurate` at the network input's resolution,
`fast` at the prototypes' (a quarter of it), `tradeoff` in between (`tradeoff_factor` 0 = fast, 1 = accurate).
RLE masks are always at the original image's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from visionserve.errors import InvalidRequestError
from visionserve.models.manifest import Task
from visionserve.tasks.base import Options, ResponseFields, option
from visionserve.tasks.detection import (
    DetectionParams,
    Detections,
    ObjectDetectionPredictor,
    parse_detection_options,
)
from visionserve.tasks.masks import Axis, MaskPatch, decode_mask, largest_polygon
from visionserve.tasks.preprocess import ImageTransform
from visionserve.tasks.rle import rle_encode_patch

MASK_MODES = ("accurate", "fast", "tradeoff")
MASK_FORMATS = ("polygon", "rle")


@dataclass(frozen=True)
class SegmentationParams:
    detection: DetectionParams
    mode: str = "accurate"
    tradeoff_factor: float = 0.0
    mask_format: str = "polygon"


def parse_segmentation_options(options: Options) -> SegmentationParams:
    mode = str(option(options, "mask_decode_mode", "accurate"))
    factor = float(option(options, "tradeoff_factor", 0.0))
    mask_format = str(option(options, "response_mask_format", "polygon"))
    if mode not in MASK_MODES or not 0.0 <= factor <= 1.0 or mask_format not in MASK_FORMATS:
        raise InvalidRequestError(
            "Invalid mask decode argument sent. tradeoff_factor must be in [0.0, 1.0], mask_decode_mode: "
            f"must be one of {list(MASK_MODES)}, response_mask_format: one of {list(MASK_FORMATS)}"
        )
    return SegmentationParams(parse_detection_options(options), mode, factor, mask_format)


class InstanceSegmentationPredictor(ObjectDetectionPredictor):
    task = Task.INSTANCE_SEGMENTATION

    def extra_values(self, output_shapes: list[tuple[int, ...]]) -> int:
        if len(output_shapes) < 2 or len(output_shapes[1]) != 4:
            raise ValueError("a segmentation model needs a second output with mask prototypes [B, M, H/4, W/4]")
        return output_shapes[1][1]

    def parse_options(self, options: Options) -> SegmentationParams:
        return parse_segmentation_options(options)

    def postprocess(
        self, outputs: list[np.ndarray], transform: ImageTransform, params: SegmentationParams
    ) -> ResponseFields:
        detections = self.detect(outputs[0], transform, params.detection)
        protos = outputs[1]
        predictions = self.box_predictions(detections)
        if params.mask_format == "rle":
            masks = self._rle_masks(protos, detections, transform)
        else:
            masks = self._polygons(protos, detections, transform, params)
        return {"predictions": with_masks(predictions, masks)}

    def _polygon_axes(self, protos: np.ndarray, params: SegmentationParams) -> tuple[float, float]:
        """Target pixels per input pixel, per axis, for the requested mode."""
        input_h, input_w = self.input_hw
        proto_h, proto_w = protos.shape[1:]
        blend = {"fast": 0.0, "accurate": 1.0}.get(params.mode, params.tradeoff_factor)
        return (
            (proto_w * (1 - blend) + input_w * blend) / input_w,
            (proto_h * (1 - blend) + input_h * blend) / input_h,
        )

    def _polygons(
        self, protos: np.ndarray, detections: Detections, transform: ImageTransform, params: SegmentationParams
    ) -> list[dict[str, Any] | None]:
        scale_x, scale_y = self._polygon_axes(protos, params)
        x_axis, y_axis = Axis(scale_x), Axis(scale_y)
        size = (round(self.input_hw[1] * scale_x), round(self.input_hw[0] * scale_y))
        masks = []
        for box, coefficients in zip(detections.input_boxes, detections.extras):
            polygon = largest_polygon(decode_mask(protos, coefficients, box, self.input_hw, x_axis, y_axis, size))
            in_input = np.stack([x_axis.to_input(polygon[:, 0]), y_axis.to_input(polygon[:, 1])], axis=1)
            masks.append(polygon_field(transform.points_to_original(in_input)))
        return masks

    def _rle_masks(
        self, protos: np.ndarray, detections: Detections, transform: ImageTransform
    ) -> list[dict[str, Any] | None]:
        (scale_x, shift_x), (scale_y, shift_y) = transform.input_to_original_axes()
        x_axis, y_axis = Axis(scale_x, shift_x), Axis(scale_y, shift_y)
        width, height = transform.image_width, transform.image_height
        masks = []
        for box, coefficients in zip(detections.input_boxes, detections.extras):
            patch = decode_mask(protos, coefficients, box, self.input_hw, x_axis, y_axis, (width, height))
            masks.append(rle_field(patch, height, width) if patch.mask.any() else None)
        return masks


def polygon_field(points: np.ndarray) -> dict[str, Any] | None:
    """A prediction's `points` from a contour in original pixels; None when the contour encloses no area (an
    empty or one-pixel-thin mask, which Ultralytics drops as empty)."""
    if len(points) < 3 or cv2.contourArea(points.astype(np.float32)) <= 0:
        return None
    return {"points": [{"x": x, "y": y} for x, y in points.tolist()], "mask_format": "polygon"}


def rle_field(patch: MaskPatch, height: int, width: int) -> dict[str, Any]:
    """The patch's mask as RLE over the whole image, at the cost of the patch alone."""
    rle = rle_encode_patch(patch.mask, patch.left, patch.top, height, width)
    return {"rle": rle, "mask_format": "rle"}


def with_masks(predictions: list[dict[str, Any]], masks: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Each prediction with its mask fields; detections without a usable mask are dropped, not answered with an
    empty or degenerate outline."""
    return [{**prediction, **mask} for prediction, mask in zip(predictions, masks) if mask is not None]
