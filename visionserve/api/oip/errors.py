"""Errors in the protocol's shape, `{"error": "..."}`, on every `/v2` answer, whoever wrote it: the routes,
access control, the body size limit, back-pressure, or the framework (unknown path, wrong method). The rest of
the API answers `{"message": ...}`, which is rewritten here for `/v2` only."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v2"


def is_protocol_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def protocol_error_body(body: bytes) -> bytes:
    """`{"message": m}` → `{"error": m}`; FastAPI's `{"detail": ...}` → its text; anything else unchanged."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(parsed, dict) or "error" in parsed:
        return body
    message = parsed.get("message", parsed.get("detail"))
    return (
        body
        if message is None
        else orjson.dumps({"error": message if isinstance(message, str) else str(message)})
    )


class ProtocolErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_protocol_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        held: Message | None = None  # an error's start, held until its body is complete
        chunks: list[bytes] = []

        async def send_protocol_errors(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] >= 400 and _is_json(message):
                held = message
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = protocol_error_body(b"".join(chunks))
            headers = [(k, v) for k, v in held["headers"] if k != b"content-length"]
            await send({**held, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_protocol_errors)


def _is_json(start: Message) -> bool:
    return any(
        k == b"content-type" and v.startswith(b"application/json") for k, v in start.get("headers", [])
    )
