"""A run's profiler trace, as Chrome trace events (`name`, `ph`, `pid`, `tid`, `ts` in µs, `cat`), the form the
reference returns in `profiler_trace` and that chrome://tracing and Perfetto open."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Profiler:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _event(self, name: str, phase: str, category: str) -> None:
        event = {"name": name, "ph": phase, "pid": os.getpid(), "tid": threading.get_ident(),
                 "ts": time.time_ns() / 1000, "cat": category}  # fmt: skip
        with self._lock:
            self.events.append(event)

    @contextmanager
    def span(self, name: str, category: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._event(name, "B", category)
        try:
            yield
        finally:
            self._event(name, "E", category)

    def trace(self) -> list[dict[str, Any]] | None:
        return self.events if self.enabled else None
