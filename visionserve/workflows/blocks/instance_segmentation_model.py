"""Instance segmentation model step: boxes with a polygon mask each."""

from __future__ import annotations

from typing import Literal

from visionserve.models.manifest import Task
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import selector
from visionserve.workflows.blocks.model_common import DetectionManifest, DetectionV3Manifest, detection_blocks


class _SegmentationManifest(DetectionManifest):
    mask_decode_mode: Literal["accurate", "tradeoff", "fast"] | selector(  # type: ignore[valid-type]
        kinds.STRING
    ) = "accurate"
    tradeoff_factor: float | selector(kinds.FLOAT_ZERO_TO_ONE, kinds.FLOAT) = 0.0  # type: ignore[valid-type]


class InstanceSegmentationV3(_SegmentationManifest, DetectionV3Manifest):
    type: Literal["roboflow_core/roboflow_instance_segmentation_model@v3"]


class InstanceSegmentationV2(_SegmentationManifest):
    type: Literal["roboflow_core/roboflow_instance_segmentation_model@v2"]


class InstanceSegmentationV1(_SegmentationManifest):
    type: Literal["roboflow_core/roboflow_instance_segmentation_model@v1", "RoboflowInstanceSegmentationModel",
                  "InstanceSegmentationModel"]  # fmt: skip


BLOCKS = detection_blocks(
    Task.INSTANCE_SEGMENTATION, kinds.INSTANCE_SEGMENTATION, InstanceSegmentationV1, InstanceSegmentationV2,
    "Instance Segmentation Model", InstanceSegmentationV3,
)  # fmt: skip
