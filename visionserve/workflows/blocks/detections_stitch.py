"""Detections stitch (SAHI's second half): the detections made on the slices (or crops) of an image, moved into that
image's coordinates and joined, with overlaps between neighbouring slices removed by NMS (the server's own,
class-aware) or merged (NMM). It takes the slices' level back to their image's (dimensionality -1)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from visionserve.tasks.nms import batched_nms
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.blocks.fusion_common import concatenated, non_max_merge
from visionserve.workflows.values import Detections, WorkflowImage

STRATEGIES = ("none", "nms", "nmm")  # Literal[STRATEGIES]: the manifest takes these


class DetectionsStitchManifest(BlockManifest):
    type: Literal["roboflow_core/detections_stitch@v1"]
    reference_image: selector(kinds.IMAGE) = Field(  # type: ignore[valid-type]
        description="The image the slices were cut from: the detections come back in its coordinates."
    )
    predictions: selector(kinds.OBJECT_DETECTION, kinds.INSTANCE_SEGMENTATION) = Field(  # type: ignore[valid-type]
        description="Detections made on the slices (one level deeper than reference_image)."
    )
    overlap_filtering_strategy: Literal[STRATEGIES] | selector(kinds.STRING) = "nms"  # type: ignore[valid-type]
    iou_threshold: float | selector(kinds.FLOAT_ZERO_TO_ONE) = Field(0.3, ge=0.0, le=1.0)  # type: ignore[valid-type]


def _in_reference(detections: Detections, reference: WorkflowImage) -> Detections:
    """Detections made on a slice of `reference` (or of a slice of it), in `reference`'s coordinates."""
    image = detections.image
    if image is None or image.root.image_id != reference.root.image_id:
        raise StepInputError("these predictions were not made on slices of reference_image.")
    return detections.shifted(image.root.offset_x - reference.root.offset_x,
                              image.root.offset_y - reference.root.offset_y)  # fmt: skip


def stitch(step: DetectionsStitchManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    reference: WorkflowImage = inputs["reference_image"]
    strategy, iou_threshold = inputs["overlap_filtering_strategy"], inputs["iou_threshold"]
    if strategy not in STRATEGIES:
        raise StepInputError(f"overlap_filtering_strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}.")
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or not 0 <= iou_threshold <= 1:
        raise StepInputError(f"iou_threshold must be a number from 0 to 1, not {iou_threshold!r}.")
    joined = concatenated([_in_reference(part, reference) for part in inputs["predictions"] if len(part)], reference)
    if strategy == "nmm":
        return {"predictions": non_max_merge(joined, iou_threshold)}
    if strategy == "nms":
        keep = batched_nms(joined.xyxy, joined.confidence, joined.class_id, iou_threshold, len(joined))
        joined = joined.selected(np.sort(keep))  # in slice order, as they came
    return {"predictions": joined}


BLOCK = BlockSpec(
    DetectionsStitchManifest, (Output("predictions", (kinds.OBJECT_DETECTION, kinds.INSTANCE_SEGMENTATION)),),
    per_element(stitch), dimensionality_offset=-1, nested_inputs=frozenset({"predictions"}),
    human_name="Detections Stitch",
)  # fmt: skip
