"""JSON request bodies parsed and validated in a worker thread, never on the event loop.

FastAPI validates a body on the event loop, where a 0.3 MB list of thousands of broken items stalls every route
for seconds. Routes built with `OffLoopBodyRoute` keep their typed body parameter (it documents the schema), but the
body is read here: the image count is checked on the raw JSON first, then the model validates in a worker.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from visionserve.core import too_many_images
from visionserve.observe import timed

M = TypeVar("M", bound=BaseModel)


@timed("parse")
def validated_body(model: type[M], body: bytes, max_images: int) -> M:
    """The body as `model`; over-long image lists are refused before any item is validated."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", error.pos), "msg": "JSON decode error", "ctx": {"error": error.msg}}]
        ) from None
    images = parsed.get("image") if isinstance(parsed, dict) else None
    if isinstance(images, list) and len(images) > max_images:
        raise too_many_images(len(images), max_images)
    try:
        return model.model_validate(parsed)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        raise RequestValidationError([{**problem, "loc": ("body", *problem["loc"])} for problem in problems]) from None


class OffLoopBodyRoute(APIRoute):
    """A POST route whose endpoint is `endpoint(body, request, **path_parameters)`: the body model comes from the
    endpoint's annotation, and is validated by `validated_body` in the server's worker pool."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        model = inspect.signature(self.endpoint).parameters["body"].annotation
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            state = request.app.state.visionserve
            body = await state.in_worker(validated_body, model, await request.body(), state.settings.max_batch_images)
            return await endpoint(body, request, **request.path_params)

        return handler
