"""One shared pool of CPU workers for the parts of a request that can run side by side: decoding the images of a
batch, and running its chunks on a session that takes several runs at once. OpenCV and ONNX Runtime release the
GIL, so these threads really do use several cores."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from visionserve.runtime.threads import available_cores

T = TypeVar("T")
R = TypeVar("R")

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(available_cores(), thread_name_prefix="visionserve-cpu")
        return _pool


def cpu_map(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`function` over `items`, in order; one item runs in the calling thread. Tasks must not call cpu_map
    themselves (they would wait on the pool they occupy)."""
    if len(items) <= 1:
        return [function(item) for item in items]
    pool = _shared_pool()  # each task runs in a copy of the caller's context (request stats, for one)
    futures = [pool.submit(contextvars.copy_context().run, function, item) for item in items]
    return [future.result() for future in futures]
