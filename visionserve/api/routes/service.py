"""Server identity and health: `/info`, `/healthz`, `/readiness`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from visionserve import __version__
from visionserve.api.state import ServerState, get_state

router = APIRouter(tags=["service"])


class ServerInfo(BaseModel):
    name: str
    version: str
    uuid: str


class Status(BaseModel):
    status: str


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


@router.get("/healthz", response_model=Status, summary="The process is up")
async def healthz() -> Status:
    return Status(status="healthy")


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
