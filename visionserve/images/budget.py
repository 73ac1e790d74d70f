"""Decoded-pixel budgets: what one request may hold, and what all requests in flight may hold together.

The per-image limit alone lets one request of 64 small files that each claim the largest allowed image take
gigabytes. A request charges each image before its pixels exist (from the header), so a request over its budget
is refused (413) without decoding, and one that would push the server over its shared budget gets a 503 to retry.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

from visionserve.errors import PayloadTooLargeError, ServiceUnavailableError


class ServerPixels:
    """The pool shared by every request in flight."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, pixels: int) -> None:
        with self._lock:
            if self.used + pixels > self.limit:
                raise ServiceUnavailableError(
                    f"The server is holding as many decoded pixels as it may ({self.limit}, "
                    "VISIONSERVE_MAX_SERVER_PIXELS) - retry request."
                )
            self.used += pixels

    def give_back(self, pixels: int) -> None:
        with self._lock:
            self.used -= pixels


class RequestPixels:
    """One request's budget, drawn from the server's pool; give it all back by leaving the `with` block."""

    def __init__(self, limit: int, server: ServerPixels) -> None:
        self.limit = limit
        self.server = server
        self.used = 0
        self._lock = threading.Lock()

    def charge(self, width: int, height: int) -> None:
        pixels = width * height
        with self._lock:
            if self.used + pixels > self.limit:
                raise PayloadTooLargeError(
                    f"The request's images hold more than {self.limit} pixels together "
                    "(VISIONSERVE_MAX_REQUEST_PIXELS); send fewer or smaller images per request."
                )
            self.server.take(pixels)
            self.used += pixels

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        with self._lock:
            self.server.give_back(self.used)
            self.used = 0
