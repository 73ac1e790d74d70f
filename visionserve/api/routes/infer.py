"""`POST /infer/{task}`: JSON bodies in, the reference's JSON out (a list when a list was sent).

Every route runs the same core path; a model whose task differs from the route's is refused with a 400.
(No `from __future__ import annotations` here: the routes are built in a loop, so FastAPI needs real types.)
"""

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from visionserve.api.body import OffLoopBodyRoute
from visionserve.api.keys import json_route_key
from visionserve.api.schemas import (
    ClassificationRequest,
    ClassificationResponse,
    ErrorResponse,
    InferenceRequest,
    InstanceSegmentationRequest,
    InstanceSegmentationResponse,
    KeypointsDetectionRequest,
    KeypointsDetectionResponse,
    MultiLabelClassificationResponse,
    ObjectDetectionRequest,
    ObjectDetectionResponse,
    OrientedDetectionRequest,
    OrientedDetectionResponse,
    SemanticSegmentationRequest,
    SemanticSegmentationResponse,
)
from visionserve.api.state import ServerState
from visionserve.models.manifest import Task

router = APIRouter(tags=["inference"])

ERROR_RESPONSES = {
    400: {"model": ErrorResponse, "description": "The image or a parameter cannot be used, or the task differs."},
    404: {"model": ErrorResponse, "description": "No model with this id."},
    500: {"model": ErrorResponse, "description": "The model cannot be loaded."},
    503: {"model": ErrorResponse, "description": "Temporarily unavailable; retry."},
}


TASK_PATHS: dict[Task, str] = {}  # the route serving each task, filled as the routes are made


def json_response(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


def _add_route(
    path: str, task: Task, request_model: type[InferenceRequest], response_model: object, summary: str
) -> None:
    async def infer(body: request_model, request: Request) -> Response:  # type: ignore[valid-type]
        state: ServerState = request.app.state.visionserve
        job = body.to_job(task, state.request_key(json_route_key(request, body.api_key)))
        return json_response(await state.run_job(request, state.service.run_json, job))

    router.add_api_route(
        path,
        infer,
        methods=["POST"],
        response_model=response_model,
        response_model_exclude_none=True,
        responses=ERROR_RESPONSES,
        summary=summary,
        name=f"infer_{task.name.lower()}",
        route_class_override=OffLoopBodyRoute,
    )
    TASK_PATHS[task] = path


def _one_or_many(model: type[BaseModel]) -> object:
    return model | list[model]  # type: ignore[valid-type]


_add_route(
    "/infer/object_detection",
    Task.OBJECT_DETECTION,
    ObjectDetectionRequest,
    _one_or_many(ObjectDetectionResponse),
    "Detect objects in one image or a list of images",
)
_add_route(
    "/infer/instance_segmentation",
    Task.INSTANCE_SEGMENTATION,
    InstanceSegmentationRequest,
    _one_or_many(InstanceSegmentationResponse),
    "Detect objects with their masks (polygons or RLE)",
)
_add_route(
    "/infer/classification",
    Task.CLASSIFICATION,
    ClassificationRequest,
    ClassificationResponse | MultiLabelClassificationResponse | list[ClassificationResponse]
    | list[MultiLabelClassificationResponse],
    "Classify images (single- or multi-label, as the model was trained)",
)
_add_route(
    "/infer/keypoints_detection",
    Task.KEYPOINT_DETECTION,
    KeypointsDetectionRequest,
    _one_or_many(KeypointsDetectionResponse),
    "Detect objects with their named keypoints",
)
_add_route(
    "/infer/obb",
    Task.ORIENTED_OBJECT_DETECTION,
    OrientedDetectionRequest,
    _one_or_many(OrientedDetectionResponse),
    "Detect oriented (rotated) boxes: centre, size, angle and corners (a visionserve extension)",
)
_add_route(
    "/infer/semantic_segmentation",
    Task.SEMANTIC_SEGMENTATION,
    SemanticSegmentationRequest,
    _one_or_many(SemanticSegmentationResponse),
    "Classify every pixel: class map and confidence as base64 PNGs at the image's size",
)
