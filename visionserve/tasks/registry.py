"""Which predictor serves which task."""

from __future__ import annotations

from visionserve.errors import TaskNotSupportedError
from visionserve.models.manifest import Task
from visionserve.tasks.base import Predictor
from visionserve.tasks.detection import ObjectDetectionPredictor

PREDICTORS: dict[Task, type[Predictor]] = {
    Task.OBJECT_DETECTION: ObjectDetectionPredictor,
}


def predictor_class(task: Task) -> type[Predictor]:
    try:
        return PREDICTORS[task]
    except KeyError:
        raise TaskNotSupportedError(f"Models of task '{task.value}' cannot be served yet.") from None
