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


MAX_REPORTED_PROBLEMS = 10
_ECHOED_INPUT_CHARS = 200


def _reported(problem: dict) -> dict:
    """A problem as the 422 lists it: its input echoed only when short (a body may be megabytes), bytes as text."""
    value = problem.get("input")
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    short = value is None or isinstance(value, (bool, int, float)) or (
        isinstance(value, str) and len(value) <= _ECHOED_INPUT_CHARS
    )
    reported = {key: item for key, item in problem.items() if key not in ("input", "url")}
    return {**reported, "input": value} if short else reported


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 `{"detail": [...]}`, capped at the first problems (one per broken item of a long list would
    be megabytes), with a `message` that counts them all."""
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    message = f"{len(problems)} problem(s) with the request; the first: {where}: {first.get('msg')}."
    details = [_reported(problem) for problem in problems[:MAX_REPORTED_PROBLEMS]]
    return JSONResponse({"message": message, "detail": jsonable_encoder(details)}, status_code=422)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error while serving %s %s", request.method, request.url.path)
    return JSONResponse({"message": "Internal error."}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(VisionServeError, _known_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
