"""Absolute static crop: the same box (centre and size in pixels) cut from every image; one crop per image, so
the batch level stays the same. Detections made on the crop go back to the image's coordinates in outputs."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import AliasChoices, Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.values import WorkflowImage

Pixels = int | selector(kinds.INTEGER)


class AbsoluteStaticCropManifest(BlockManifest):
    type: Literal["roboflow_core/absolute_static_crop@v1", "AbsoluteStaticCrop"]
    images: selector(kinds.IMAGE) = Field(validation_alias=AliasChoices("images", "image"))  # type: ignore[valid-type]
    x_center: Pixels  # type: ignore[valid-type]
    y_center: Pixels  # type: ignore[valid-type]
    width: Pixels  # type: ignore[valid-type]
    height: Pixels  # type: ignore[valid-type]


def _pixels(inputs: StepInputs, name: str) -> int:
    value = inputs[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StepInputError(f"{name} must be a number of pixels, not {value!r}.")
    return int(value)


def static_crop(step: AbsoluteStaticCropManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    image: WorkflowImage = inputs["images"]
    x, y, width, height = (_pixels(inputs, name) for name in ("x_center", "y_center", "width", "height"))
    if width <= 0 or height <= 0:
        raise StepInputError(f"the crop must have a positive size, not {width}x{height}.")
    x1, y1 = x - width // 2, y - height // 2
    crop = image.cropped(x1, y1, x1 + width, y1 + height, str(uuid.uuid4()))
    return {"crops": crop if crop.width and crop.height else None}


BLOCK = BlockSpec(
    AbsoluteStaticCropManifest, (Output("crops", (kinds.IMAGE,)),), per_element(static_crop),
    human_name="Absolute Static Crop",
)  # fmt: skip
