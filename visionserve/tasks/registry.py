"""Which predictor serves which task."""

from __future__ import annotations

from visionserve.errors import TaskNotSupportedError
from visionserve.models.manifest import Task
from visionserve.tasks.base import Predictor
from visionserve.tasks.classification import ClassificationPredictor
from visionserve.tasks.detection import ObjectDetectionPredictor
from visionserve.tasks.keypoints import KeypointsPredictor
from visionserve.tasks.obb import OrientedDetectionPredictor
from visionserve.tasks.segmentation import InstanceSegmentationPredictor

PREDICTORS: dict[Task, type[Predictor]] = {
    Task.OBJECT_DETECTION: ObjectDetectionPredictor,
    Task.INSTANCE_SEGMENTATION: InstanceSegmentationPredictor,
    Task.CLASSIFICATION: ClassificationPredictor,
    Task.KEYPOINT_DETECTION: KeypointsPredictor,
    Task.ORIENTED_OBJECT_DETECTION: OrientedDetectionPredictor,
}


def predictor_class(task: Task) -> type[Predictor]:
    try:
        return PREDICTORS[task]
    except KeyError:
        raise TaskNotSupportedError(f"Models of task '{task.value}' cannot be served yet.") from None
