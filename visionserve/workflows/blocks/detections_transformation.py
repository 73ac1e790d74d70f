"""Detections transformation: detections changed by a chain of the operation language's detections operations
(filter, sort, offset, rename, select); the chain must end with detections."""

from __future__ import annotations

from typing import Any, Literal

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element
from visionserve.workflows.blocks.detections_filter import DetectionsFilterManifest, filter_step
from visionserve.workflows.values import Detections


class DetectionsTransformationManifest(DetectionsFilterManifest):
    type: Literal["roboflow_core/detections_transformation@v1", "DetectionsTransformation"]  # type: ignore[assignment]


def transform(step: DetectionsTransformationManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    result = filter_step(step, inputs, context)
    if not isinstance(result["predictions"], Detections):
        raise StepInputError(
            f"the operations must end with detections, but they give a {type(result['predictions']).__name__}: "
            "use only DetectionsFilter, SortDetections, DetectionsOffset, DetectionsRename and DetectionsSelection."
        )
    return result


BLOCK = BlockSpec(
    DetectionsTransformationManifest, (Output("predictions", kinds.DETECTIONS),), per_element(transform),
    human_name="Detections Transformation",
)  # fmt: skip
