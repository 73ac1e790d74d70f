"""Dynamic crop: one child image per detection (its box, rounded to whole pixels, clipped to the image), so the
next steps run once per crop and their results nest per parent image (dimensionality +1).

With instance masks and `mask_opacity` > 0, pixels outside the mask are blended toward `background_color`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import AliasChoices, Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.values import Detections, WorkflowImage

_COLOR = re.compile(r"^\(?\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)?$")


class DynamicCropManifest(BlockManifest):
    type: Literal["roboflow_core/dynamic_crop@v1", "DynamicCrop", "Crop"]
    images: selector(kinds.IMAGE) = Field(validation_alias=AliasChoices("images", "image"))  # type: ignore[valid-type]
    predictions: selector(*kinds.DETECTIONS) = Field(  # type: ignore[valid-type]
        validation_alias=AliasChoices("predictions", "detections")
    )
    mask_opacity: float | selector(kinds.FLOAT_ZERO_TO_ONE) = Field(0.0, ge=0.0, le=1.0)  # type: ignore[valid-type]
    background_color: str | tuple[int, int, int] | selector(kinds.STRING) = "(0, 0, 0)"  # type: ignore[valid-type]


def _color(value: Any) -> tuple[int, int, int]:
    """A BGR colour: `(b, g, r)` as a tuple or its text, or `#RRGGBB`."""
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return tuple(int(part) for part in value)  # type: ignore[return-value]
    text = str(value).strip()
    if re.fullmatch(r"#[0-9A-Fa-f]{6}", text):
        red, green, blue = (int(text[i : i + 2], 16) for i in (1, 3, 5))
        return blue, green, red
    match = _COLOR.match(text)
    if match is None:
        raise StepInputError(f"background_color {value!r} is not a colour: use '(b, g, r)' or '#RRGGBB'.")
    return tuple(int(part) for part in match.groups())  # type: ignore[return-value]


def _masked(crop: WorkflowImage, polygon: np.ndarray, opacity: float, color: tuple[int, int, int]) -> WorkflowImage:
    mask = np.zeros(crop.pixels.shape[:2], dtype=np.uint8)
    shifted = polygon - np.array([crop.parent.offset_x, crop.parent.offset_y])
    cv2.fillPoly(mask, [np.round(shifted).astype(np.int32)], 1)
    outside = (1 - mask)[..., None].astype(np.float32) * opacity
    blended = crop.pixels * (1 - outside) + np.array(color, dtype=np.float32) * outside
    return crop.with_pixels(np.round(blended).astype(np.uint8))


def crop_detections(step: DynamicCropManifest, inputs: StepInputs, context: StepContext) -> list[dict[str, Any]]:
    image: WorkflowImage = inputs["images"]
    detections: Detections = inputs["predictions"]
    opacity = float(inputs["mask_opacity"])
    color = _color(inputs["background_color"]) if opacity > 0 else (0, 0, 0)
    children = []
    for index, (x1, y1, x2, y2) in enumerate(np.round(detections.xyxy).astype(int)):
        crop = image.cropped(x1, y1, x2, y2, str(detections.detection_id[index]))
        if crop.width == 0 or crop.height == 0:
            continue  # a box outside the image has no pixels to crop
        if opacity > 0 and detections.polygons is not None and len(detections.polygons[index]):
            crop = _masked(crop, detections.polygons[index], opacity, color)
        own = detections.selected(np.array([index]))
        own = own.shifted(-crop.parent.offset_x, -crop.parent.offset_y)
        children.append({"crops": crop, "predictions": _on(own, crop)})
    return children


def _on(detections: Detections, image: WorkflowImage) -> Detections:
    return replace(detections, image=image, image_size=(image.width, image.height))


BLOCK = BlockSpec(
    DynamicCropManifest,
    (Output("crops", (kinds.IMAGE,)), Output("predictions", kinds.DETECTIONS)),
    per_element(crop_detections),
    dimensionality_offset=1,
    human_name="Dynamic Crop",
)
