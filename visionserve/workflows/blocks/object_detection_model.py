"""Object detection model step: boxes with class and confidence, from any detection model this server serves."""

from __future__ import annotations

from typing import Literal

from visionserve.models.manifest import Task
from visionserve.workflows import kinds
from visionserve.workflows.blocks.model_common import DetectionManifest, DetectionV3Manifest, detection_blocks


class ObjectDetectionV3(DetectionV3Manifest):
    type: Literal["roboflow_core/roboflow_object_detection_model@v3"]


class ObjectDetectionV2(DetectionManifest):
    type: Literal["roboflow_core/roboflow_object_detection_model@v2"]


class ObjectDetectionV1(DetectionManifest):
    type: Literal["roboflow_core/roboflow_object_detection_model@v1", "RoboflowObjectDetectionModel",
                  "ObjectDetectionModel"]  # fmt: skip


BLOCKS = detection_blocks(
    Task.OBJECT_DETECTION, kinds.OBJECT_DETECTION, ObjectDetectionV1, ObjectDetectionV2, "Object Detection Model",
    ObjectDetectionV3,
)
