"""Detections filter: the detections for which the operations (usually one `DetectionsFilter`) keep them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.operations.evaluate import apply_all
from visionserve.workflows.operations.language import Operation


class DetectionsFilterManifest(BlockManifest):
    type: Literal["roboflow_core/detections_filter@v1", "DetectionsFilter"]
    predictions: selector(*kinds.DETECTIONS)  # type: ignore[valid-type]
    operations: list[Operation] = Field(min_length=1, max_length=64)
    operations_parameters: dict[str, selector(kinds.WILDCARD)] = Field(default_factory=dict)  # type: ignore[valid-type]


def filter_step(step: DetectionsFilterManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    return {"predictions": apply_all(inputs["predictions"], step.operations, inputs["operations_parameters"])}


BLOCK = BlockSpec(
    DetectionsFilterManifest, (Output("predictions", kinds.DETECTIONS),), per_element(filter_step),
    human_name="Detections Filter",
)  # fmt: skip
