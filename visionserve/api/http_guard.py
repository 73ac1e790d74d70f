"""uvicorn's httptools protocol, with bounds it lacks: request line plus headers at most `max_header_bytes` and
`max_header_count` lines (else 431), and `header_timeout_s` to send them (else 408 and the connection closes), so
neither a 128 MiB header line nor hundreds of connections that never finish their headers can hold the server.

Passed to uvicorn as `http="visionserve.api.http_guard:BoundedHttpProtocol"` (a string, so worker processes import
it too); the limits come from the settings, read once per process.
"""

from __future__ import annotations

import asyncio
import functools

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from visionserve.config import Settings

_HEADERS_END = b"\r\n\r\n"


@functools.cache
def _settings() -> Settings:
    return Settings()


class BoundedHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._awaiting_headers()
        self._start_header_clock()  # a connection that never sends a byte is cut too

    def _awaiting_headers(self) -> None:
        """Between requests: the next bytes are a request line and headers, on the clock."""
        self._header_bytes = 0
        self._header_count = 0
        self._tail = b""  # the previous chunk's last bytes, for an end of headers split across chunks
        self._in_headers = True
        self._refusal: tuple[int, str] | None = None
        self._header_timer: asyncio.TimerHandle | None = None

    def _start_header_clock(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(_settings().header_timeout_s, self._headers_too_slow)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._start_header_clock()
            seen = self._tail + data
            end = seen.find(_HEADERS_END)
            self._header_bytes += (end + len(_HEADERS_END) - len(self._tail)) if end >= 0 else len(data)
            self._tail = seen[-(len(_HEADERS_END) - 1) :]
            limit = _settings().max_header_bytes
            if self._header_bytes > limit:
                self._refuse(431, f"The request line and headers exceed {limit} bytes (VISIONSERVE_MAX_HEADER_BYTES).")
                return
        super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        limit = _settings().max_header_count
        if self._header_count > limit:
            self._refusal = (431, f"The request has more than {limit} headers (VISIONSERVE_MAX_HEADER_COUNT).")
            raise httptools.HttpParserCallbackError("too many headers")  # uvicorn answers through send_400_response
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._stop_header_clock()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._awaiting_headers()  # uvicorn's keep-alive timeout covers the idle time until the next request

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._answer_and_close(*self._refusal)

    def _refuse(self, status: int, message: str) -> None:
        self._refusal = (status, message)
        self._answer_and_close(status, message)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing():
            limit = _settings().header_timeout_s
            self._answer_and_close(408, f"The request's headers took longer than {limit:g} s (VISIONSERVE_HEADER_TIMEOUT_S).")

    def _answer_and_close(self, status: int, message: str) -> None:
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = orjson.dumps({"message": message})
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, reason, len(body)) + body)
        self.transport.close()
