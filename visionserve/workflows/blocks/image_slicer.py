"""Image slicer (SAHI): overlapping tiles of each image, so a detector sees small objects at full resolution; the
next steps run once per slice and their results nest per image (dimensionality +1) until detections_stitch.

v1 steps by `slice - overlap` from 0 and clips the last tiles at the image's edge (they may be narrow); v2 moves
those last tiles back inside the image, so every tile has the full size where the image allows, without repeats.
The overlap is `int(ratio * slice size)` pixels.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import AliasChoices, Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.limits import WorkflowLimits
from visionserve.workflows.values import WorkflowImage

SliceSize = int | selector(kinds.INTEGER)
OverlapRatio = float | selector(kinds.FLOAT_ZERO_TO_ONE)


class ImageSlicerManifestV1(BlockManifest):
    type: Literal["roboflow_core/image_slicer@v1"]
    image: selector(kinds.IMAGE) = Field(validation_alias=AliasChoices("image", "images"))  # type: ignore[valid-type]
    slice_width: SliceSize = Field(640, description="Width of each slice, in pixels.")  # type: ignore[valid-type]
    slice_height: SliceSize = Field(640, description="Height of each slice, in pixels.")  # type: ignore[valid-type]
    overlap_ratio_width: OverlapRatio = Field(  # type: ignore[valid-type]
        0.2, description="Part of a slice's width shared with its neighbour (0 to below 1)."
    )
    overlap_ratio_height: OverlapRatio = Field(  # type: ignore[valid-type]
        0.2, description="Part of a slice's height shared with its neighbour (0 to below 1)."
    )


class ImageSlicerManifestV2(ImageSlicerManifestV1):
    type: Literal["roboflow_core/image_slicer@v2"]  # type: ignore[assignment]


def _size(inputs: StepInputs, name: str) -> int:
    value = inputs[name]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise StepInputError(f"{name} must be a positive whole number of pixels, not {value!r}.")
    return value


def _ratio(inputs: StepInputs, name: str) -> float:
    value = inputs[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise StepInputError(f"{name} must be a number from 0 to below 1, not {value!r}.")
    return float(value)


def axis_starts(image_size: int, slice_size: int, overlap_ratio: float, equal_sized: bool) -> list[int]:
    """Where the slices along one axis begin."""
    stride = slice_size - int(overlap_ratio * slice_size)
    starts = range(0, image_size, stride)
    if not equal_sized:
        return list(starts)
    last = max(image_size - slice_size, 0)
    return sorted({min(start, last) for start in starts})


SliceFunction = Callable[[ImageSlicerManifestV1, StepInputs, StepContext], list[dict[str, Any]]]


def slicer(equal_sized: bool) -> SliceFunction:
    """The function of one element, for v1 (`equal_sized` off) or v2."""

    def slice_image(step: ImageSlicerManifestV1, inputs: StepInputs, context: StepContext) -> list[dict[str, Any]]:
        image: WorkflowImage = inputs["image"]
        width, height = _size(inputs, "slice_width"), _size(inputs, "slice_height")
        xs = axis_starts(image.width, width, _ratio(inputs, "overlap_ratio_width"), equal_sized)
        ys = axis_starts(image.height, height, _ratio(inputs, "overlap_ratio_height"), equal_sized)
        WorkflowLimits(max_crops_per_image=context.max_crops_per_image).check_crops(len(xs) * len(ys), step.name)
        return [{"slices": image.cropped(x, y, x + width, y + height, f"image_slicer.{uuid.uuid4()}")}
                for y in ys for x in xs]  # fmt: skip

    return slice_image


BLOCKS = tuple(
    BlockSpec(manifest, (Output("slices", (kinds.IMAGE,)),), per_element(slicer(equal_sized)),
              dimensionality_offset=1, human_name="Image Slicer")  # fmt: skip
    for manifest, equal_sized in ((ImageSlicerManifestV1, False), (ImageSlicerManifestV2, True))
)
