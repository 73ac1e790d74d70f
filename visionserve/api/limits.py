"""Request body size limit, enforced on the declared length and again on the bytes actually received."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionserve.errors import PayloadTooLargeError


class BodyTooLarge(PayloadTooLargeError, HTTPException):
    """Also an HTTPException, which FastAPI lets through unchanged when it fails while reading a body."""

    def __init__(self, message: str) -> None:
        PayloadTooLargeError.__init__(self, message)
        HTTPException.__init__(self, self.status_code, message)


class BodySizeLimit:
    """Refuses bodies over `max_bytes` with a 413. The rest of an oversized body is read and dropped (up to a
    bound) before the answer goes out, so the client, still sending, is there to receive it."""

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int = 64 * 1024 * 1024) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes

    def _error(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"Request body is larger than the limit of {self.max_bytes} bytes (VISIONSERVE_MAX_BODY_BYTES)."
        )

    async def _drain(self, receive: Receive) -> None:
        drained = 0
        while drained < self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        declared_too_large = declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            if declared_too_large:
                await self._drain(receive)
                raise self._error()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await self._drain(receive)
                    raise self._error()  # mapped to a 413 JSON response by the app's error handlers
            return message

        await self.app(scope, counted_receive, send)
