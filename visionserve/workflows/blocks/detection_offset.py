"""Detection offset: every box grown by a width and height (pixels, or percent of the box), half on each side."""

from __future__ import annotations

from typing import Any, Literal

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.values import Detections


class DetectionOffsetManifest(BlockManifest):
    type: Literal["roboflow_core/detection_offset@v1", "DetectionOffset"]
    predictions: selector(*kinds.DETECTIONS)  # type: ignore[valid-type]
    offset_width: int | selector(kinds.INTEGER)  # type: ignore[valid-type]
    offset_height: int | selector(kinds.INTEGER)  # type: ignore[valid-type]
    units: Literal["Pixels", "Percent (%)"] = "Pixels"


def offset(step: DetectionOffsetManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    detections: Detections = inputs["predictions"]
    width, height = inputs["offset_width"], inputs["offset_height"]
    if any(isinstance(value, bool) or not isinstance(value, int) for value in (width, height)):
        raise StepInputError(f"offsets must be whole numbers, not {width!r} and {height!r}.")
    if step.units == "Percent (%)":
        box_width = detections.xyxy[:, 2] - detections.xyxy[:, 0]
        box_height = detections.xyxy[:, 3] - detections.xyxy[:, 1]
        width, height = (box_width * width / 100).round(), (box_height * height / 100).round()
    return {"predictions": detections.grown(width, height)}


BLOCK = BlockSpec(
    DetectionOffsetManifest, (Output("predictions", kinds.DETECTIONS),), per_element(offset),
    human_name="Detection Offset",
)  # fmt: skip
