"""The hosted API's route, `POST|GET /{project}/{version}`: options in the query, the image in the body
(base64 text under any Content-Type, a multipart `file` part, or raw image bytes) or as `?image=<url>`; a JSON
object body is a v2-style request (`image` as an object or a list, options by their v2 names), as the hosted API's
documentation shows.

The reference's quirks that clients depend on are kept: `confidence` and `overlap` of 1 or more are percentages,
and a numeric confidence is never below 0.01.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import fastapi.routing
import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.routing import compile_path

from visionserve.api.keys import legacy_route_key
from visionserve.api.routes.infer import ERROR_RESPONSES, json_response
from visionserve.api.schemas import Confidence, ErrorResponse, ImageInput
from visionserve.api.state import ServerState, get_state
from visionserve.core import InferenceJob, too_many_images, with_visualization
from visionserve.errors import InputImageError, InvalidRequestError, VisionServeError
from visionserve.images.numpy_input import looks_like_array
from visionserve.images.sources import ENCODED, ImageSpec, looks_like_image_file
from visionserve.models.ids import validate_model_id
from visionserve.observe import timed

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


class LegacyJsonBody(BaseModel):
    """A JSON object sent to the legacy route: the image(s) and options named as in the `/infer/*` requests."""

    model_config = ConfigDict(extra="allow")

    image: ImageInput | list[ImageInput]
    api_key: str | None = None
    confidence: Confidence | None = None
    iou_threshold: float | None = None
    max_detections: int | None = Field(None, ge=0)

    def images(self) -> list[ImageSpec]:
        return [image.spec() for image in (self.image if isinstance(self.image, list) else [self.image])]

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude={"image", "api_key", "model_id", "id"}, exclude_none=True)


@dataclass(frozen=True)
class LegacyInput:
    """What a legacy request asks for, whichever way it was sent."""

    images: list[ImageSpec]
    as_list: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # from a JSON body; they win over the query's
    api_key: str | None = None  # from a JSON body


MAX_LISTED_PROBLEMS = 10


@timed("parse")
def json_body(body: bytes, max_images: int) -> LegacyInput:
    """A JSON body (run in a worker: its size is the caller's choice); over-long image lists are refused before
    any item is validated, and at most `MAX_LISTED_PROBLEMS` problems are listed."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidRequestError(f"The body starts as JSON but is not valid JSON: {error}.") from None
    images = raw.get("image") if isinstance(raw, dict) else None
    if isinstance(images, list) and len(images) > max_images:
        raise too_many_images(len(images), max_images)
    try:
        parsed = LegacyJsonBody.model_validate(raw)
    except ValidationError as error:
        listed = error.errors()[:MAX_LISTED_PROBLEMS]
        problems = "; ".join(f"{'.'.join(map(str, problem['loc'])) or 'body'}: {problem['msg']}" for problem in listed)
        more = f" (and {error.error_count() - len(listed)} more)" if error.error_count() > len(listed) else ""
        raise InvalidRequestError(
            f"The body is JSON, so it is read as a request with `image` and options: {problems}{more}."
        ) from None
    return LegacyInput(parsed.images(), isinstance(parsed.image, list), parsed.options(), parsed.api_key)


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
    if looks_like_image_file(body) or looks_like_array(body) or not body.isascii():
        return ImageSpec(ENCODED, body)  # raw bytes: the reference refuses them, we decode them
    return ImageSpec("base64", body)


async def request_input(request: Request, query: LegacyQuery) -> LegacyInput:
    if query.image is not None:
        return LegacyInput([ImageSpec("url", query.image)])
    content_type = request.headers.get("content-type")
    if content_type and "multipart/form-data" in content_type.lower():
        form = await request.form()
        upload = form.get("file")
        if upload is None:
            raise InputImageError("Expected image to be send in part named 'file' of multipart/form-data request")
        if not isinstance(upload, UploadFile):
            raise InvalidRequestError("Invalid Content-Type header provided with request: part 'file' is not a file.")
        return LegacyInput([ImageSpec(ENCODED, await upload.read())])
    body = await request.body()
    if not body:
        if content_type is None:
            raise InvalidRequestError("Content-Type header not provided with request.")
        raise InputImageError("Empty image payload.")
    if body.lstrip().startswith(b"{"):  # no base64 text, image file or pickle starts with a brace
        state: ServerState = request.app.state.visionserve
        return await state.in_worker(json_body, body, state.settings.max_batch_images)
    return LegacyInput([body_image(body, query.image_type.lower())])


BODY_DOCS = {
    "requestBody": {
        "description": "The image: base64 text (any Content-Type), raw image bytes, a multipart part `file`, or a "
        "JSON object with `image` ({type, value} or a list of them) and options named as in `/infer/*` requests.",
        "content": {
            "application/x-www-form-urlencoded": {"schema": {"type": "string"}},
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "string", "description": "base64 text of the image"},
                        {
                            "type": "object",
                            "required": ["image"],
                            "description": "`image` and options, as in `/infer/*` requests",
                        },
                    ]
                }
            },
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
    if project in reserved_segments(request.app):
        allowed = methods_at(request.app, request.url.path)
        if allowed:
            raise WrongMethodError(request.method, request.url.path, allowed)
        raise UnknownRouteError(request.app, request.method, project, version)
    model_id = validate_model_id(f"{project}/{version}")
    sent = await request_input(request, query)
    job = InferenceJob(
        model_id=model_id,
        images=sent.images,
        request_id=str(uuid.uuid4()),
        as_list=sent.as_list,
        options={**query.options(), **sent.options},
        auto_orient=not query.disable_preproc_auto_orient,
        api_key=state.request_key(legacy_route_key(request, query.api_key) or sent.api_key),
    )
    results = await state.run_job(request, state.service.run, job)
    if query.format == "image" and not job.as_list and results[0].visualization is not None:
        return Response(results[0].visualization, media_type="image/jpeg")
    answers = [with_visualization(result) for result in results]
    return json_response(orjson.dumps(answers if job.as_list else answers[0]))


# Newer FastAPI keeps included routers nested in `app.routes` and walks them with this; older ones flatten them.
_route_contexts = getattr(fastapi.routing, "iter_route_contexts", iter)


def route_table(app: FastAPI) -> dict[str, set[str]]:
    """Path → methods of every route but this one: the documented ones, the pages left out of the schema, and
    static mounts (GET)."""
    table: dict[str, set[str]] = {}
    for route in _route_contexts(app.routes):
        if route.path is not None:
            table.setdefault(route.path, set()).update(set(route.methods or {"GET"}) - {"HEAD"})
    table.pop(LEGACY_PATH, None)
    return table


def reserved_segments(app: FastAPI) -> frozenset[str]:
    """First path segments of the server's other routes: never a model's project, so `/infer/typo` is a 404
    that names the real routes rather than a lookup of model `infer/typo`."""
    return frozenset(path.strip("/").split("/")[0] for path in route_table(app) if path != "/")


def methods_at(app: FastAPI, path: str) -> set[str]:
    """The methods the server's other routes take at this very path: a GET to a POST-only two-segment route
    (`/infer/object_detection`) reaches this route's GET, yet is a wrong method, not a model id."""
    return {
        method
        for template, methods in route_table(app).items()
        if compile_path(template)[0].fullmatch(path)
        for method in methods
    }


class WrongMethodError(VisionServeError):
    status_code = 405

    def __init__(self, method: str, path: str, allowed: set[str]) -> None:
        super().__init__(f"{method} is not allowed on {path}; it takes {' or '.join(sorted(allowed))}.")
        self.headers = {"Allow": ", ".join(sorted(allowed))}


class UnknownRouteError(VisionServeError):
    status_code = 404

    def __init__(self, app: FastAPI, method: str, project: str, version: str) -> None:
        routes = sorted(
            f"{'|'.join(sorted(methods))} {path}"
            for path, methods in route_table(app).items()
            if path.strip("/").split("/")[0] == project
        )
        super().__init__(
            f"No route {method} /{project}/{version}: /{project}/... is not a model id but the server's own. "
            f"Routes there: {', '.join(routes)}."
        )


# One route for both methods, so a 405 lists both in `Allow`; the OpenAPI schema gives each method its own
# operation id (see `api.app.openapi_schema`).
router.add_api_route(
    LEGACY_PATH,
    legacy_infer,
    methods=["GET", "POST"],
    responses={
        **ERROR_RESPONSES,
        200: {"description": "JSON predictions, or a JPEG with `format=image`."},
        405: {"model": ErrorResponse, "description": "One of the server's own paths, with a method it does not take."},
    },
    openapi_extra=BODY_DOCS,
    summary="Infer with any model, hosted-API style (one image, options in the query)",
    operation_id="legacy_infer",
)
