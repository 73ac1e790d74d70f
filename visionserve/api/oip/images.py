"""Images in, predictions out: the signature this server adds to every model, defined here once (the model
metadata answer and the README say the same).

In: `images`, BYTES, one encoded image (JPEG, PNG, ...) per element: the file's bytes in binary data, its
base64 text in JSON. Task options travel as request parameters. Out: one row per prediction, images after one
another, plus each image's JSON exactly as `/infer/{task}` answers it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from visionserve.api.oip.schemas import Parameters, TensorMetadata
from visionserve.api.oip.tensors import BYTES, Tensor, bytes_array, describe_validation_error
from visionserve.api.schemas import (
    ClassificationRequest,
    InferenceRequest,
    InstanceSegmentationRequest,
    KeypointsDetectionRequest,
    ObjectDetectionRequest,
    OrientedDetectionRequest,
    SemanticSegmentationRequest,
)
from visionserve.core import ImageResult, InferenceJob
from visionserve.errors import InvalidRequestError
from visionserve.images.sources import ENCODED, ImageSpec
from visionserve.models.loader import LoadedModel
from visionserve.models.manifest import Task
from visionserve.tasks.keypoints import KeypointsPredictor

IMAGES_INPUT = "images"
SIGNATURE = {"signature": "images"}
Prediction = dict[str, Any]


@dataclass(frozen=True)
class OutputSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: variable
    description: str
    values: Callable[
        [list[Prediction], int], np.ndarray
    ]  # (every image's prediction rows, keypoints per row)


def _floats(rows: list[list[float]], width: int) -> np.ndarray:
    return np.array(rows, dtype=np.float32).reshape(-1, width)


def _xyxy(predictions: list[Prediction], _: int) -> np.ndarray:
    return _floats(
        [
            [
                p["x"] - p["width"] / 2,
                p["y"] - p["height"] / 2,
                p["x"] + p["width"] / 2,
                p["y"] + p["height"] / 2,
            ]
            for p in predictions
        ],
        4,
    )


def _corner_bounds(predictions: list[Prediction], _: int) -> np.ndarray:
    corners = [[(point["x"], point["y"]) for point in p["points"]] for p in predictions]
    return _floats([[*np.min(quad, axis=0), *np.max(quad, axis=0)] for quad in corners], 4)


def _xywhr(predictions: list[Prediction], _: int) -> np.ndarray:
    return _floats([[p["x"], p["y"], p["width"], p["height"], p["angle"]] for p in predictions], 5)


def _masks(predictions: list[Prediction], _: int) -> np.ndarray:
    return bytes_array(
        [orjson.dumps(p["points"] if p["mask_format"] == "polygon" else p["rle"]) for p in predictions]
    )


def _keypoints(predictions: list[Prediction], count: int) -> np.ndarray:
    array = np.zeros((len(predictions), count, 3), dtype=np.float32)
    for row, prediction in enumerate(predictions):
        for point in prediction["keypoints"]:
            array[row, point["class_id"]] = (point["x"], point["y"], point["confidence"])
    return array


def _scores(predictions: list[Prediction], _: int) -> np.ndarray:
    return np.array([p["confidence"] for p in predictions], dtype=np.float32)


def _class_ids(predictions: list[Prediction], _: int) -> np.ndarray:
    return np.array([p["class_id"] for p in predictions], dtype=np.int32)


SCORES = OutputSpec("scores", "FP32", (-1,), "Confidence of each row.", _scores)
CLASS_IDS = OutputSpec(
    "class_ids", "INT32", (-1,), "Class index of each row (class_names in the parameters).", _class_ids
)
BOXES = OutputSpec("boxes", "FP32", (-1, 4), "x1, y1, x2, y2 in original-image pixels.", _xyxy)
ORIENTED_BOUNDS = OutputSpec(
    "boxes", "FP32", (-1, 4), "x1, y1, x2, y2 around the corners, original pixels.", _corner_bounds
)
ROTATED_BOXES = OutputSpec(
    "rotated_boxes", "FP32", (-1, 5), "Centre x, y, width, height, angle (radians).", _xywhr
)
MASKS = OutputSpec(
    "masks",
    BYTES,
    (-1,),
    "JSON: the polygon [{x, y}, ...], or the RLE {size, counts} with "
    "response_mask_format=rle, as /infer/instance_segmentation.",
    _masks,
)
KEYPOINTS = OutputSpec(
    "keypoints", "FP32", (-1, -1, 3), "x, y, confidence per keypoint; zeros for those left out.", _keypoints
)

AUTO_ORIENT_AND_PREPROC = (
    "disable_preproc_auto_orient",
    "disable_preproc_contrast",
    "disable_preproc_grayscale",
    "disable_preproc_static_crop",
)
DETECTION_OPTIONS = (
    "confidence",
    "iou_threshold",
    "class_agnostic_nms",
    "max_detections",
    "max_candidates",
    "class_filter",
    *AUTO_ORIENT_AND_PREPROC,
)


@dataclass(frozen=True)
class TaskSignature:
    request: type[InferenceRequest]  # validates the options, as on the task's /infer route
    options: tuple[str, ...]
    outputs: tuple[OutputSpec, ...]  # besides the ones every task has


SIGNATURES: dict[Task, TaskSignature] = {
    Task.OBJECT_DETECTION: TaskSignature(ObjectDetectionRequest, DETECTION_OPTIONS, (BOXES,)),
    Task.INSTANCE_SEGMENTATION: TaskSignature(
        InstanceSegmentationRequest,
        (*DETECTION_OPTIONS, "mask_decode_mode", "tradeoff_factor", "response_mask_format"),
        (BOXES, MASKS),
    ),
    Task.KEYPOINT_DETECTION: TaskSignature(
        KeypointsDetectionRequest, (*DETECTION_OPTIONS, "keypoint_confidence"), (BOXES, KEYPOINTS)
    ),
    Task.ORIENTED_OBJECT_DETECTION: TaskSignature(
        OrientedDetectionRequest, DETECTION_OPTIONS, (ORIENTED_BOUNDS, ROTATED_BOXES)
    ),
    Task.CLASSIFICATION: TaskSignature(ClassificationRequest, ("confidence", *AUTO_ORIENT_AND_PREPROC), ()),
    # No rows: the class and confidence maps travel in `predictions` as the route answers them.
    Task.SEMANTIC_SEGMENTATION: TaskSignature(
        SemanticSegmentationRequest, ("confidence", *AUTO_ORIENT_AND_PREPROC), ()
    ),
}
PREDICTIONS_DESCRIPTION = (
    "Per image: the JSON object /infer/{task} answers (inference_id, time, image, predictions)."
)
IMAGE_INDEX_DESCRIPTION = "Which image (index in `images`) each row belongs to."
INPUT_DESCRIPTION = "Encoded images (JPEG, PNG, WebP...): file bytes in binary data, base64 text in JSON."


def keypoint_count(model: LoadedModel) -> int:
    return model.predictor.keypoint_shape[0] if isinstance(model.predictor, KeypointsPredictor) else 0


def input_metadata() -> TensorMetadata:
    return TensorMetadata(
        name=IMAGES_INPUT,
        datatype=BYTES,
        shape=[-1],
        parameters={**SIGNATURE, "description": INPUT_DESCRIPTION},
    )


def output_metadata(model: LoadedModel) -> list[TensorMetadata]:
    def shape(spec: OutputSpec) -> list[int]:
        return [
            keypoint_count(model) if spec is KEYPOINTS and index == 1 else axis
            for index, axis in enumerate(spec.shape)
        ]

    described = [
        TensorMetadata(
            name="predictions",
            datatype=BYTES,
            shape=[-1],
            parameters={**SIGNATURE, "description": PREDICTIONS_DESCRIPTION},
        ),
        TensorMetadata(
            name="image_index",
            datatype="INT32",
            shape=[-1],
            parameters={**SIGNATURE, "description": IMAGE_INDEX_DESCRIPTION},
        ),
    ]
    for spec in (SCORES, CLASS_IDS, *SIGNATURES[model.task].outputs):
        described.append(
            TensorMetadata(
                name=spec.name,
                datatype=spec.datatype,
                shape=shape(spec),
                parameters={**SIGNATURE, "description": spec.description},
            )
        )
    return described


def options_of(task: Task) -> tuple[str, ...]:
    return SIGNATURES[task].options


def images_job(
    model: LoadedModel,
    images: Tensor,
    parameters: Parameters,
    request_id: str | None,
    api_key: str | None,
    cancelled: threading.Event,
) -> InferenceJob:
    """The core's job for these images, with the options the task's /infer route takes, checked alike."""
    signature = SIGNATURES[model.task]
    options = {name: value for name, value in parameters.items() if name in signature.options}
    if isinstance(options.get("class_filter"), str):  # parameters are scalars: a comma-separated list
        options["class_filter"] = [
            name.strip() for name in options["class_filter"].split(",") if name.strip()
        ]
    identity = {"model_id": model.model_id, "image": [], **({"id": request_id} if request_id else {})}
    try:
        request = signature.request.model_validate({**options, **identity})
    except ValidationError as error:
        raise InvalidRequestError(f"Invalid parameters: {describe_validation_error(error)}") from None
    specs = [
        ImageSpec(ENCODED, value) if isinstance(value, bytes) else ImageSpec("base64", value)
        for value in images.values
    ]
    return replace(request.to_job(model.task, api_key), images=specs, cancelled=cancelled)


def prediction_outputs(model: LoadedModel, results: list[ImageResult]) -> dict[str, np.ndarray]:
    """Every output of the images signature, from the JSON the core answered for each image."""
    rows_per_image = [_rows(model.task, result.response) for result in results]
    rows = [row for image_rows in rows_per_image for row in image_rows]
    count = keypoint_count(model)
    outputs = {
        "predictions": bytes_array([orjson.dumps(result.response) for result in results]),
        "image_index": np.repeat(np.arange(len(results), dtype=np.int32), [len(r) for r in rows_per_image]),
    }
    for spec in (SCORES, CLASS_IDS, *SIGNATURES[model.task].outputs):
        outputs[spec.name] = spec.values(rows, count)
    return outputs


def _rows(task: Task, response: dict[str, Any]) -> list[Prediction]:
    """One row per prediction; a multi-label classifier's rows are its predicted classes, a semantic map has none."""
    predictions = response["predictions"]
    if task is Task.SEMANTIC_SEGMENTATION:
        return []
    if task is Task.CLASSIFICATION and isinstance(predictions, dict):
        return [predictions[name] for name in response["predicted_classes"]]
    return predictions
