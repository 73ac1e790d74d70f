"""Per request: an id (echoed from `X-Request-ID` or made up) on the response, stats gathered while serving, one
log line at the end (text or JSON), and the request metrics. Query strings are never logged: they may hold keys."""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionserve.api.metrics import Metrics
from visionserve.observe import RequestStats, current_stats

logger = logging.getLogger("visionserve.access")
REQUEST_ID_HEADER = b"x-request-id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if _SAFE_ID.fullmatch(candidate):
                return candidate
    return uuid.uuid4().hex


def _route(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics, json_logs: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.json_logs = json_logs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        stats = RequestStats()
        token = current_stats.set(stats)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_stats.reset(token)
            seconds = time.perf_counter() - started
            self.metrics.observe_request(_route(scope), scope["method"], status, seconds, stats)
            if logger.isEnabledFor(logging.INFO):  # the record costs more than the check, at every request
                self._log(scope, request_id, status, seconds, stats)

    def _log(self, scope: Scope, request_id: str, status: int, seconds: float, stats: RequestStats) -> None:
        record = {
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "ms": round(seconds * 1000, 2),
        }
        if stats.model_id is not None:
            record["model"] = stats.model_id
            record["images"] = [f"{width}x{height}" for width, height in stats.image_sizes]
            record.update({f"{stage}_ms": round(value * 1000, 2) for stage, value in stats.seconds.items()})
        if self.json_logs:
            logger.info(orjson.dumps(record).decode())
        else:
            logger.info(" ".join(f"{key}={','.join(value) if isinstance(value, list) else value}" for key, value in record.items()))
