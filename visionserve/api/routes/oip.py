"""The Open Inference Protocol (KServe V2, Triton HTTP) under `/v2`: server and model metadata, health and
readiness, and inference, over the same core as the other routes (see `visionserve.api.oip`).

Registered before the legacy `/{project}/{version}` route, whose two segments would otherwise take `/v2/...`
paths of two segments; those that the protocol does not define answer 404 here. (No `from __future__ import
annotations` here: the model routes are built in a loop, so FastAPI needs real types.)"""

import functools
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel

from visionserve.api.keys import bearer_token
from visionserve.api.oip.errors import PREFIX
from visionserve.api.oip.inference import ProtocolCall, infer
from visionserve.api.oip.metadata import model_metadata, server_metadata
from visionserve.api.oip.names import ModelName
from visionserve.api.oip.schemas import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    ProtocolError,
    ServerMetadata,
)
from visionserve.api.state import ServerState, get_state
from visionserve.errors import VisionServeError
from visionserve.models.loader import LoadedModel

router = APIRouter(tags=["open inference protocol"])
State = Annotated[ServerState, Depends(get_state)]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ProtocolError, "description": "The model name, a tensor or a parameter cannot be used."},
    404: {"model": ProtocolError, "description": "No model with this name and version."},
    500: {"model": ProtocolError, "description": "The model cannot be loaded."},
    503: {"model": ProtocolError, "description": "Temporarily unavailable; retry."},
}
EMPTY_BODY: dict[str, Any] = {"content": {}}


class UnknownEndpointError(VisionServeError):
    status_code = 404


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its definitions inlined, for a request body FastAPI does not parse."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: resolve(value) for key, value in node.items()}
        return [resolve(item) for item in node] if isinstance(node, list) else node

    return resolve(schema)


GREY_PNG = (  # 16×16, for the documented example
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAANUlEQVQoFZXBAQEAAAABIP4fa5YNqsijyKPIo8ijyKPIo8ijy"
    "KPIo8ijyKPIo8ijyKPIo8hj2FwlkWWS9jAAAAAASUVORK5CYII="
)
INFER_EXAMPLE = {
    "parameters": {"confidence": 0.4},
    "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [GREY_PNG]}],
    "outputs": [{"name": "boxes"}, {"name": "scores"}, {"name": "class_ids"}],
}
INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "The JSON request, followed by the inputs' binary data when "
        "`Inference-Header-Content-Length` gives the JSON's length.",
        "content": {
            "application/json": {"schema": inline_schema(InferRequest), "example": INFER_EXAMPLE},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
INFER_RESPONSES = {
    **ERROR_RESPONSES,
    413: {
        "model": ProtocolError,
        "description": "The body (inflated if compressed) or its JSON is over a limit, or a raw tensor over the "
        "model's forward pass or the image pixel limit.",
    },
    415: {"model": ProtocolError, "description": "A Content-Encoding other than gzip or deflate."},
    200: {
        "model": InferResponse,
        "description": "The outputs; with binary data, Inference-Header-Content-Length is the JSON's length.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
}


def caller_key(request: Request) -> str | None:
    """As access control reads it: `Authorization: Bearer` wins over `?api_key=`."""
    return bearer_token(request) or request.query_params.get("api_key") or None


@router.get(PREFIX, response_model=ServerMetadata, summary="Server metadata (Open Inference Protocol)")
async def oip_server_metadata() -> ServerMetadata:
    return server_metadata()


@router.get(
    f"{PREFIX}/health/live", response_class=Response, responses={200: EMPTY_BODY}, summary="The process is up"
)
async def oip_live() -> Response:
    return Response()


@router.get(
    f"{PREFIX}/health/ready",
    response_class=Response,
    responses={200: EMPTY_BODY, 503: {"description": "Start-up models are still loading.", **EMPTY_BODY}},
    summary="The server is ready (start-up models loaded)",
)
async def oip_ready(state: State) -> Response:
    return Response(status_code=200 if state.ready else 503)


@router.api_route(f"{PREFIX}/{{endpoint}}", methods=["GET", "POST"], include_in_schema=False)
async def oip_unknown(endpoint: str) -> Response:
    raise UnknownEndpointError(
        f"{PREFIX}/{endpoint} is not an endpoint of this server's Open Inference Protocol."
    )


Name = Annotated[
    str, Path(description="`project` of a `project/version` id, or a one-segment id.", examples=["nudenet"])
]
Version = Annotated[str, Path(description="`version` of a `project/version` id.", examples=["1"])]


def unversioned(name: Name) -> ModelName:
    return ModelName(name)


def versioned(name: Name, version: Version) -> ModelName:
    return ModelName(name, version)


async def loaded(model: ModelName, request: Request, state: ServerState) -> LoadedModel:
    """The model, loaded first if needed (downloaded with the caller's key where keys are forwarded)."""
    return await state.in_worker(state.manager.get, model.model_id, state.request_key(caller_key(request)))


def _add_model_routes(path: str, name_of: Callable[..., ModelName], suffix: str) -> None:
    Model = Annotated[ModelName, Depends(name_of)]

    async def metadata(model: Model, request: Request, state: State) -> ModelMetadata:
        return model_metadata(model, await loaded(model, request, state))

    async def ready(model: Model, request: Request, state: State) -> Response:
        await loaded(model, request, state)
        return Response()

    async def run(model: Model, request: Request, state: State) -> Response:
        call = ProtocolCall(
            model=model,
            body=await request.body(),
            header_length=request.headers.get("inference-header-content-length"),
            content_encoding=request.headers.get("content-encoding"),
            api_key=state.request_key(caller_key(request)),
            cancelled=threading.Event(),
        )
        work = functools.partial(infer, state.service, call, state.settings.max_body_bytes)
        body, header_length = await state.run_guarded(request, work, call.cancelled)
        if header_length is None:
            return Response(body, media_type="application/json")
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )

    router.add_api_route(
        path,
        metadata,
        methods=["GET"],
        response_model=ModelMetadata,
        responses=ERROR_RESPONSES,
        summary="Model metadata: both signatures' inputs and outputs",
        name=f"oip_model_metadata{suffix}",
    )
    router.add_api_route(
        f"{path}/ready",
        ready,
        methods=["GET"],
        response_class=Response,
        responses={**ERROR_RESPONSES, 200: EMPTY_BODY},
        summary="The model is loaded (loading it if needed)",
        name=f"oip_model_ready{suffix}",
    )
    router.add_api_route(
        f"{path}/infer",
        run,
        methods=["POST"],
        response_class=Response,
        responses=INFER_RESPONSES,
        openapi_extra=INFER_BODY,
        summary="Run the model: encoded images or its own tensors",
        name=f"oip_infer{suffix}",
    )


_add_model_routes(f"{PREFIX}/models/{{name}}", unversioned, "")
_add_model_routes(f"{PREFIX}/models/{{name}}/versions/{{version}}", versioned, "_version")
