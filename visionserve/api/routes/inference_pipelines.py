"""Stream pipelines over HTTP: the reference's `/inference_pipelines/*` routes and answers (so `inference-sdk`'s
pipeline calls work unchanged), plus a live feed of results as Server-Sent Events.

The official client sends `{"api_key": ...}` as a JSON body on every call, GETs included; access control reads it
there like on every other route, so with keys set no route of a pipeline answers without one (the reference checks
only initialise). Control routes answer in the reference's `CommandResponse` shape.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from visionserve.api.keys import json_route_key
from visionserve.api.schemas import ErrorResponse
from visionserve.api.state import ServerState
from visionserve.streams.builder import StreamServer, build_pipeline, live_feed
from visionserve.streams.errors import PipelineRefused
from visionserve.streams.payload import InitialisePipelinePayload, ModelPipelinePayload, parse_payload
from visionserve.streams.sinks.feed import TooManySubscribers

ERRORS = {
    400: "The payload cannot start a pipeline (bad source, definition or body).",
    401: "A key is needed (VISIONSERVE_API_KEYS is set).",
    403: "A source or output the address or folder policy refuses.",
    404: "No such pipeline, or model.",
    413: "Over a cap (sources per pipeline, results buffer).",
    429: "As many pipelines run as the server allows, or as many feed subscribers read.",
    501: "This deployment runs no pipelines (Ray Serve).",
}
router = APIRouter(
    prefix="/inference_pipelines", tags=["stream pipelines"],
    responses={code: {"model": ErrorResponse, "description": text} for code, text in ERRORS.items()},
)  # fmt: skip
HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing an idle feed


def _state(request: Request) -> ServerState:
    return request.app.state.visionserve


def _answer(pipeline_id: str | None, **extra: Any) -> JSONResponse:
    context = {"request_id": str(uuid.uuid4()), "pipeline_id": pipeline_id}
    return JSONResponse({"status": "success", "context": context, **extra})


class _InvalidPayload(Exception):
    """The body is JSON but no pipeline payload: answered in the reference's invalid_payload shape."""


def _json_object(raw: bytes) -> dict[str, Any]:
    """A body as a JSON object; GETs from the official client carry one too, others none."""
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise PipelineRefused(f"The body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise PipelineRefused("The body must be a JSON object.")
    return body


def _payload(raw: bytes) -> InitialisePipelinePayload | ModelPipelinePayload:
    try:
        return parse_payload(_json_object(raw))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors())
        raise _InvalidPayload(f"Invalid pipeline payload: {problems}") from None


async def _json_body(request: Request) -> dict[str, Any]:
    """Parsed in a worker, as every JSON body of this server: never on the event loop (`api/body.py`)."""
    return await _state(request).in_worker(_json_object, await request.body())


@router.get("/list", summary="Ids of the pipelines on this server")
async def list_pipelines(request: Request) -> JSONResponse:
    return _answer(None, pipelines=_state(request).pipelines.ids())


@router.post("/initialise", summary="Start a pipeline: a workflow (the reference's payload) or a model per frame")
async def initialise(request: Request) -> JSONResponse:
    state = _state(request)
    try:
        payload = await state.in_worker(_payload, await request.body())
    except _InvalidPayload as error:
        return JSONResponse({"message": str(error), "error_type": "invalid_payload",
                             "inner_error_type": "ValidationError"}, status_code=400)  # fmt: skip
    api_key = state.request_key(json_route_key(request, payload.api_key))
    server = StreamServer(state.settings, state.service)
    pipeline = await state.in_worker(
        state.pipelines.start, lambda pipeline_id: build_pipeline(server, payload, api_key, pipeline_id)
    )
    return _answer(pipeline.pipeline_id)


@router.get("/{pipeline_id}/status", summary="State, frames read / inferred / dropped, FPS, latency, errors")
async def status(request: Request, pipeline_id: str) -> JSONResponse:
    return _answer(pipeline_id, report=_state(request).pipelines.get(pipeline_id).report())


@router.post("/{pipeline_id}/pause", summary="Stop inferring (live sources keep their connection)")
async def pause(request: Request, pipeline_id: str) -> JSONResponse:
    _state(request).pipelines.get(pipeline_id).pause()
    return _answer(pipeline_id)


@router.post("/{pipeline_id}/resume", summary="Infer again after a pause")
async def resume(request: Request, pipeline_id: str) -> JSONResponse:
    _state(request).pipelines.get(pipeline_id).resume()
    return _answer(pipeline_id)


@router.post("/{pipeline_id}/terminate", summary="Stop the pipeline and forget it (from any state)")
async def terminate(request: Request, pipeline_id: str) -> JSONResponse:
    state = _state(request)
    await state.in_worker(state.pipelines.terminate, pipeline_id)
    return _answer(pipeline_id)


def _without(outputs: list[Any], excluded: set[str]) -> list[Any]:
    return [None if item is None else {k: v for k, v in item.items() if k not in excluded} for item in outputs]


@router.get("/{pipeline_id}/consume", summary="The oldest unread results (one batch, or up to max_results)")
async def consume(
    request: Request, pipeline_id: str,
    max_results: int = Query(1, ge=1, le=1024, description="Batches to take at once (ours; the reference: 1)."),
) -> JSONResponse:  # fmt: skip
    pipeline = _state(request).pipelines.get(pipeline_id)
    excluded = set((await _json_body(request)).get("excluded_fields") or ())
    if max_results == 1:
        outputs, frames = pipeline.consume()
        return _answer(pipeline_id, outputs=_without(outputs, excluded), frames_metadata=frames)
    batches = pipeline.consume_many(max_results)
    results = [{"outputs": _without(outputs, excluded), "frames_metadata": frames} for outputs, frames in batches]
    return _answer(pipeline_id, results=results, results_waiting=pipeline.results_waiting)


@router.get("/{pipeline_id}/events", summary="Results as they come, as Server-Sent Events (ours)")
async def events(request: Request, pipeline_id: str, images: bool = False) -> StreamingResponse:
    pipeline = _state(request).pipelines.get(pipeline_id)
    try:
        subscription = live_feed(pipeline.sinks).subscribe(images=images)
    except TooManySubscribers as error:
        raise PipelineRefused(str(error), 429) from None

    async def stream():
        try:
            while not subscription.ended:
                message = await subscription.next(timeout=HEARTBEAT_S)
                if message is None:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                yield b"event: result\ndata: " + orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n\n"
            for _ in range(100):  # the feed closes while the pipeline finishes: say how it ended, once it did
                if pipeline.finished:
                    break
                await asyncio.sleep(0.05)
            yield b"event: end\ndata: " + orjson.dumps({"state": pipeline.state.value}) + b"\n\n"
        finally:
            subscription.close()

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
