"""Which predictor serves which task of which model family."""

from __future__ import annotations

from visionserve.errors import TaskNotSupportedError
from visionserve.models.manifest import ModelFamily, Task
from visionserve.tasks.base import Predictor
from visionserve.tasks.classification import ClassificationPredictor
from visionserve.tasks.detection import ObjectDetectionPredictor
from visionserve.tasks.keypoints import KeypointsPredictor
from visionserve.tasks.obb import OrientedDetectionPredictor
from visionserve.tasks.rfdetr import RFDETRDetectionPredictor, RFDETRSegmentationPredictor
from visionserve.tasks.rfdetr_keypoints import RFDETRKeypointsPredictor
from visionserve.tasks.rtdetr import RTDETRDetectionPredictor
from visionserve.tasks.segmentation import InstanceSegmentationPredictor
from visionserve.tasks.semantic import SemanticSegmentationPredictor
from visionserve.tasks.yolo_nas import YoloNasDetectionPredictor
from visionserve.tasks.yolox import YoloxDetectionPredictor

PREDICTORS: dict[tuple[ModelFamily, Task], type[Predictor]] = {
    (ModelFamily.YOLO, Task.OBJECT_DETECTION): ObjectDetectionPredictor,
    (ModelFamily.YOLO, Task.INSTANCE_SEGMENTATION): InstanceSegmentationPredictor,
    (ModelFamily.YOLO, Task.CLASSIFICATION): ClassificationPredictor,
    (ModelFamily.YOLO, Task.KEYPOINT_DETECTION): KeypointsPredictor,
    (ModelFamily.YOLO, Task.ORIENTED_OBJECT_DETECTION): OrientedDetectionPredictor,
    (ModelFamily.YOLO, Task.SEMANTIC_SEGMENTATION): SemanticSegmentationPredictor,
    (ModelFamily.RFDETR, Task.OBJECT_DETECTION): RFDETRDetectionPredictor,
    (ModelFamily.RFDETR, Task.INSTANCE_SEGMENTATION): RFDETRSegmentationPredictor,
    (ModelFamily.RFDETR, Task.KEYPOINT_DETECTION): RFDETRKeypointsPredictor,
    (ModelFamily.RTDETR, Task.OBJECT_DETECTION): RTDETRDetectionPredictor,
    (ModelFamily.YOLOX, Task.OBJECT_DETECTION): YoloxDetectionPredictor,
    (ModelFamily.YOLO_NAS, Task.OBJECT_DETECTION): YoloNasDetectionPredictor,
}


def predictor_class(family: ModelFamily, task: Task) -> type[Predictor]:
    try:
        return PREDICTORS[family, task]
    except KeyError:
        raise TaskNotSupportedError(
            f"{family.value} models of task '{task.value}' cannot be served yet."
        ) from None
