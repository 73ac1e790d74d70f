"""The hosted API's route, `POST|GET /{project}/{version}`: options in the query, the image in the body
(base64 text under any Content-Type, a multipart `file` part, or raw image bytes) or as `?image=<url>`.

The reference's quirks that clients depend on are kept: `confidence` and `overlap` of 1 or more are percentages,
and a numeric confidence is never below 0.01.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from visionserve.api.keys import legacy_route_key
from visionserve.api.routes.infer import ERROR_RESPONSES, json_response
from visionserve.api.state import ServerState, get_state
from visionserve.core import InferenceJob, with_visualization
from visionserve.errors import InputImageError, InvalidRequestError
from visionserve.images.sources import ENCODED, ImageSpec, looks_like_image_file
from visionserve.models.ids import validate_model_id

router = APIRouter(tags=["legacy"])

LEGACY_PATH = "/{project}/{version}"
CONFIDENCE_FLOOR = 0.01
BODY_TYPES = ("base64", "numpy", "url")


def as_fraction(value: float) -> float:
    """The hosted API reads 1 and above as a percentage (50 → 0.5)."""
    return value / 100 if value >= 1 else value


class LegacyQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    api_key: str | None = None
    image: str | None = Field(None, description="URL of the image; the body is then ignored.")
    image_type: str = Field("base64", description="How to read the body: base64 (or raw image bytes), numpy, url.")
    confidence: float | Literal["best", "default"] = Field(0.4, description="0-1, or a percentage (50 = 0.5).")
    overlap: float = Field(0.3, description="NMS IoU threshold, 0-1 or a percentage.")
    max_detections: int = Field(300, ge=0)
    format: str = Field("json", description="json, image (an annotated JPEG) or image_and_json.")
    labels: bool = Field(False, description="Draw class names on the annotated image.")
    stroke: int = Field(1, description="Line width of the annotated image.")
    keypoint_confidence: float = 0.0
    mask_decode_mode: str = "accurate"
    tradeoff_factor: float = 0.0
    response_mask_format: Literal["polygon", "rle"] = "polygon"
    disable_preproc_auto_orient: bool = False
    disable_preproc_contrast: bool = False
    disable_preproc_grayscale: bool = False
    disable_preproc_static_crop: bool = False
    disable_active_learning: bool = False
    active_learning_target_dataset: str | None = None
    source: str = "external"
    source_info: str = "external"

    def options(self) -> dict[str, Any]:
        confidence = self.confidence
        if not isinstance(confidence, str):
            confidence = max(as_fraction(confidence), CONFIDENCE_FLOOR)
        return {
            "confidence": confidence,
            "iou_threshold": as_fraction(self.overlap),
            "max_detections": self.max_detections,
            "keypoint_confidence": self.keypoint_confidence,
            "mask_decode_mode": self.mask_decode_mode,
            "tradeoff_factor": self.tradeoff_factor,
            "response_mask_format": self.response_mask_format,
            "visualize_predictions": self.format in ("image", "image_and_json"),
            "visualization_labels": self.labels,
            "visualization_stroke_width": self.stroke,
        }


def body_image(body: bytes, image_type: str) -> ImageSpec:
    """A raw body: image file bytes (sniffed), else text in the declared `image_type`."""
    if image_type not in BODY_TYPES:
        raise InputImageError(
            f"Image declaration contains not recognised image type {image_type!r}; use one of {', '.join(BODY_TYPES)}."
        )
    if image_type == "numpy":
        return ImageSpec("numpy", body)
    if image_type == "url":
        return ImageSpec("url", body.decode("utf-8", errors="replace").strip())
    if looks_like_image_file(body) or not body.isascii():
        return ImageSpec(ENCODED, body)  # raw bytes: the reference refuses them, we decode them
    return ImageSpec("base64", body)


async def request_image(request: Request, query: LegacyQuery) -> ImageSpec:
    if query.image is not None:
        return ImageSpec("url", query.image)
    content_type = request.headers.get("content-type")
    if content_type and "multipart/form-data" in content_type.lower():
        form = await request.form()
        upload = form.get("file")
        if upload is None:
            raise InputImageError("Expected image to be send in part named 'file' of multipart/form-data request")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError("Invalid Content-Type header provided with request: part 'file' is not a file.")
        return ImageSpec(ENCODED, await upload.read())
    body = await request.body()
    if not body:
        if content_type is None:
            raise InvalidRequestError("Content-Type header not provided with request.")
        raise InputImageError("Empty image payload.")
    return body_image(body, query.image_type.lower())


BODY_DOCS = {
    "requestBody": {
        "description": "The image: base64 text (any Content-Type), raw image bytes, or a multipart part `file`.",
        "content": {
            "application/x-www-form-urlencoded": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "string", "description": "base64 text, not JSON"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}


async def legacy_infer(
    project: str,
    version: str,
    request: Request,
    query: Annotated[LegacyQuery, Query()],
    state: Annotated[ServerState, Depends(get_state)],
) -> Response:
    model_id = validate_model_id(f"{project}/{version}")
    spec = await request_image(request, query)
    job = InferenceJob(
        model_id=model_id,
        images=[spec],
        request_id=str(uuid.uuid4()),
        options=query.options(),
        auto_orient=not query.disable_preproc_auto_orient,
        api_key=state.request_key(legacy_route_key(request, query.api_key)),
    )
    (result,) = await state.run_job(request, state.service.run, job)
    if query.format == "image" and result.visualization is not None:
        return Response(result.visualization, media_type="image/jpeg")
    return json_response(orjson.dumps(with_visualization(result)))


# One route for both methods, so a 405 lists both in `Allow`; the OpenAPI schema gives each method its own
# operation id (see `api.app.openapi_schema`).
router.add_api_route(
    LEGACY_PATH,
    legacy_infer,
    methods=["GET", "POST"],
    responses={**ERROR_RESPONSES, 200: {"description": "JSON predictions, or a JPEG with `format=image`."}},
    openapi_extra=BODY_DOCS,
    summary="Infer with any model, hosted-API style (one image, options in the query)",
    operation_id="legacy_infer",
)
