"""Keypoint detection model step: boxes with named keypoints each."""

from __future__ import annotations

from typing import Literal

from visionserve.models.manifest import Task
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import selector
from visionserve.workflows.blocks.model_common import DetectionManifest, detection_blocks


class _KeypointsManifest(DetectionManifest):
    keypoint_confidence: float | selector(kinds.FLOAT_ZERO_TO_ONE, kinds.FLOAT) = 0.0  # type: ignore[valid-type]


class KeypointDetectionV2(_KeypointsManifest):
    type: Literal["roboflow_core/roboflow_keypoint_detection_model@v2"]


class KeypointDetectionV1(_KeypointsManifest):
    type: Literal["roboflow_core/roboflow_keypoint_detection_model@v1", "RoboflowKeypointDetectionModel",
                  "KeypointsDetectionModel"]  # fmt: skip


BLOCKS = detection_blocks(
    Task.KEYPOINT_DETECTION, kinds.KEYPOINT_DETECTION, KeypointDetectionV1, KeypointDetectionV2,
    "Keypoint Detection Model",
)  # fmt: skip
