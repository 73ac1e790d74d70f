"""Wall-clock deadlines for outgoing HTTP, enforced on every socket operation.

httpx's timeouts bound each read, not the whole exchange: a server that sends its headers one byte a second never
trips a 10 s read timeout. Here the network backend under httpx caps every connect, read and write at what is left
of the deadline of the block it runs in (`with deadline(seconds)`), and waits in short slices, so a job that is
cancelled (`cancellation`, set per inference job) stops its downloads within a fraction of a second.

Name resolution (`resolve`) keeps the same deadline: `getaddrinfo` cannot be interrupted, so it runs on a small pool
of its own and the caller stops waiting when the deadline passes; a resolver that hangs holds one of those threads,
never a request.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

SLICE_S = 0.25  # longest single wait, so cancellation is noticed soon
RESOLVE_S = 10.0  # longest name resolution outside any deadline
# Hung resolutions hold these threads until the system resolver gives up; more lookups queue, on the clock.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="visionserve-resolve")

_deadline: ContextVar[float | None] = ContextVar("visionserve_http_deadline", default=None)
cancellation: ContextVar[threading.Event | None] = ContextVar("visionserve_cancellation", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every HTTP exchange in the block ends within `seconds` from now, all of them together."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _wait_s(timeout: float | None) -> float:
    """The next wait: at most `timeout`, what is left of the deadline, and a slice; raises once time is up."""
    cancelled = cancellation.get()
    if cancelled is not None and cancelled.is_set():
        raise httpcore.ReadTimeout("the request was cancelled")
    ends = _deadline.get()
    left = None if ends is None else ends - time.monotonic()
    if left is not None and left <= 0:
        raise httpcore.ReadTimeout("the deadline passed")
    return min(value for value in (timeout, left, SLICE_S) if value is not None)


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """`socket.getaddrinfo` for a TCP connection, within the deadline of the block (else `RESOLVE_S`): raises
    `TimeoutError` once it passes or the job is cancelled, `socket.gaierror` for a name that does not resolve."""
    lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    ends = time.monotonic() + RESOLVE_S
    while True:
        try:
            return lookup.result(timeout=min(SLICE_S, max(ends - time.monotonic(), 0.0)))
        except FutureTimeout:
            try:
                _wait_s(None)  # raises if cancelled or past the deadline
            except httpcore.TimeoutException as error:
                lookup.cancel()
                raise TimeoutError(f"{host} did not resolve in time: {error}") from None
            if time.monotonic() >= ends:
                lookup.cancel()
                raise TimeoutError(f"{host} did not resolve within {RESOLVE_S:g} s") from None


def _sliced(operation: Any, timeout: float | None, *args: Any) -> Any:
    """Run a socket operation in slices until it completes, its own timeout passes, or the deadline does."""
    started = time.monotonic()
    while True:
        try:
            return operation(*args, timeout=_wait_s(timeout))
        except (httpcore.ReadTimeout, httpcore.WriteTimeout):
            if timeout is not None and time.monotonic() - started >= timeout:
                raise
            _wait_s(None)  # raises if cancelled or past the deadline; else wait another slice


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _sliced(self._stream.read, timeout, max_bytes)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout=_left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        tls = self._stream.start_tls(ssl_context, server_hostname, timeout=_left(timeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _left(timeout: float | None) -> float | None:
    """`timeout` capped by what is left of the deadline (no slicing: for operations that cannot be resumed)."""
    ends = _deadline.get()
    if ends is None:
        return timeout
    left = max(ends - time.monotonic(), 0.001)
    return left if timeout is None else min(timeout, left)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        _wait_s(None)
        stream = self._backend.connect_tcp(host, port, _left(timeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise httpcore.ConnectError("unix sockets are not used")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def deadline_transport(**options: Any) -> httpx.HTTPTransport:
    """An httpx transport whose sockets keep the deadlines above."""
    transport = httpx.HTTPTransport(**options)
    pool = transport._pool  # httpx exposes no backend option; httpcore's pool takes any NetworkBackend
    pool._network_backend = _DeadlineBackend(pool._network_backend)
    return transport
