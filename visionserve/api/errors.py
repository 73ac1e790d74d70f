"""Mapping errors to JSON responses: `{"message": ...}` with the right status, never a stack trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from visionserve.errors import VisionServeError

logger = logging.getLogger(__name__)


async def _known_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, VisionServeError)
    return JSONResponse({"message": error.message}, status_code=error.status_code, headers=error.headers)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    """Framework errors (unparseable body, unknown path, wrong method) in the same `{"message"}` shape."""
    assert isinstance(error, StarletteHTTPException)
    return JSONResponse({"message": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's own 422 `{"detail": [...]}`, also for a body that is not UTF-8 (FastAPI's handler fails on it
    with a 500 when it echoes the body back)."""
    assert isinstance(error, RequestValidationError)
    details = [
        {**problem, "input": problem["input"].decode("utf-8", "replace")}
        if isinstance(problem.get("input"), bytes)
        else problem
        for problem in error.errors()
    ]
    return JSONResponse({"detail": jsonable_encoder(details)}, status_code=422)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error while serving %s %s", request.method, request.url.path)
    return JSONResponse({"message": "Internal error."}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(VisionServeError, _known_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
