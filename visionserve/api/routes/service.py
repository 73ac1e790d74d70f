"""Server identity and health: `/info`, `/healthz`, `/readiness`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from visionserve import __version__
from visionserve.api.state import ServerState, get_state, settings_device

router = APIRouter(tags=["service"])


class ServerInfo(BaseModel):
    name: str
    version: str
    uuid: str


class Status(BaseModel):
    status: str


class Health(Status):
    device: str = Field(description="The `device` setting as it came out here: auto, cpu, cuda, ... or custom.")
    execution_providers: list[str] = Field(description="The providers new sessions are opened with, best first.")
    models: dict[str, str] = Field(
        description="Each loaded model's id and the provider its session runs on; empty when the server has API keys "
        "(/healthz needs none, and model ids are not for anyone who can reach the port)."
    )


@router.get("/info", response_model=ServerInfo, summary="Server name, version and id")
async def info(state: Annotated[ServerState, Depends(get_state)]) -> ServerInfo:
    return ServerInfo(name="visionserve", version=__version__, uuid=state.server_id)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    summary="Prometheus metrics",
)
async def metrics(state: Annotated[ServerState, Depends(get_state)]) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", response_model=Health, summary="The process is up, and where its models run")
async def healthz(state: Annotated[ServerState, Depends(get_state)]) -> Health:
    device = settings_device(state.settings)  # probed once, at start-up
    return Health(
        status="healthy", device=device.device, execution_providers=list(device.providers),
        models={} if state.access_keys else {model.model_id: model.predictor.runner.provider
                                              for model in state.manager.loaded()},
    )  # fmt: skip


@router.get(
    "/readiness",
    response_model=Status,
    responses={503: {"model": Status, "description": "Start-up models are still loading."}},
    summary="The server is ready to serve (start-up models loaded)",
)
async def readiness(state: Annotated[ServerState, Depends(get_state)]) -> JSONResponse:
    if state.ready:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)
