"""What a request did, for its log line and for the metrics: model, image sizes, time per stage; and the CPU time
every stage has cost the process so far (the thread's own CPU clock around each stage), for `/metrics`.

The stats object lives in a context variable set per request; worker threads get it through copied contexts,
and stages add to it under a lock (a batch's chunks run side by side).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

STAGES = ("decode", "preprocess", "inference", "postprocess")


@dataclass
class RequestStats:
    model_id: str | None = None
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


current_stats: ContextVar[RequestStats | None] = ContextVar("visionserve_request_stats", default=None)

_stage_cpu: defaultdict[str, float] = defaultdict(float)
_stage_cpu_lock = threading.Lock()


def stage_cpu_seconds() -> dict[str, float]:
    """CPU seconds each stage has used in this process, every request and thread together."""
    with _stage_cpu_lock:
        return dict(_stage_cpu)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Wall time of a stage into the request's stats, and its CPU time (this thread's) into the process totals.
    A pass over several cores also uses ONNX Runtime's own threads, whose time is not the caller's."""
    started, cpu_started = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        cpu = time.thread_time() - cpu_started
        with _stage_cpu_lock:
            _stage_cpu[stage] += cpu
        stats = current_stats.get()
        if stats is not None:
            stats.add(stage, time.perf_counter() - started)


def note_model(model_id: str, image_sizes: list[tuple[int, int]]) -> None:
    stats = current_stats.get()
    if stats is not None:
        stats.model_id = model_id
        stats.image_sizes = image_sizes
