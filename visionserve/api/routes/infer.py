"""`POST /infer/{task}`: JSON bodies in, the reference's JSON out (a list when a list was sent)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from visionserve.api.keys import json_route_key
from visionserve.api.schemas import ErrorResponse, ObjectDetectionRequest, ObjectDetectionResponse
from visionserve.api.state import ServerState, get_state
from visionserve.models.manifest import Task

router = APIRouter(tags=["inference"])

ERROR_RESPONSES = {
    400: {"model": ErrorResponse, "description": "The image or a parameter cannot be used."},
    404: {"model": ErrorResponse, "description": "No model with this id."},
    500: {"model": ErrorResponse, "description": "The model cannot be loaded."},
    503: {"model": ErrorResponse, "description": "Temporarily unavailable; retry."},
}


def json_response(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


@router.post(
    "/infer/object_detection",
    response_model=ObjectDetectionResponse | list[ObjectDetectionResponse],
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    summary="Detect objects in one image or a list of images",
)
async def infer_object_detection(
    body: ObjectDetectionRequest, request: Request, state: Annotated[ServerState, Depends(get_state)]
) -> Response:
    job = body.to_job(Task.OBJECT_DETECTION, json_route_key(request, body.api_key))
    return json_response(await state.in_worker(state.service.run_json, job))
