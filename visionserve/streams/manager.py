"""The server's pipelines: started from checked payloads, listed, controlled, and reaped.

Running pipelines are capped (VISIONSERVE_MAX_PIPELINES); ended ones keep their unconsumed results but do not count,
and at most as many ended ones as the cap are remembered (the oldest ended is forgotten first).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable

from visionserve.streams.errors import PipelineNotFound, PipelineRefused
from visionserve.streams.pipeline import Pipeline

Build = Callable[[str], Pipeline]  # pipeline id -> a pipeline, checked and ready to start (raises if refused)


class PipelineManager:
    def __init__(self, max_running: int, unavailable: str | None = None) -> None:
        self.max_running = max_running
        self.unavailable = unavailable  # why this deployment runs no pipelines (a 501 naming it), or None
        self._pipelines: OrderedDict[str, Pipeline] = OrderedDict()
        self._lock = threading.Lock()
        self._starting = 0

    def start(self, build: Build) -> Pipeline:
        """A new pipeline, running; the cap is checked before and after the (slow) build."""
        if self.unavailable is not None:
            raise PipelineRefused(self.unavailable, 501)
        with self._lock:
            self._forget_old_ended()
            if self._running() + self._starting >= self.max_running:
                raise PipelineRefused(
                    f"{self.max_running} pipelines are running, the most this server runs at once "
                    "(VISIONSERVE_MAX_PIPELINES): terminate one first.", 429,
                )  # fmt: skip
            self._starting += 1
        try:
            pipeline = build(str(uuid.uuid4()))
        finally:
            with self._lock:
                self._starting -= 1
        with self._lock:
            self._pipelines[pipeline.pipeline_id] = pipeline
        pipeline.start()
        return pipeline

    def get(self, pipeline_id: str) -> Pipeline:
        with self._lock:
            pipeline = self._pipelines.get(pipeline_id)
        if pipeline is None:
            raise PipelineNotFound(pipeline_id)
        return pipeline

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._pipelines)

    def terminate(self, pipeline_id: str) -> None:
        pipeline = self.get(pipeline_id)
        pipeline.terminate()
        with self._lock:
            self._pipelines.pop(pipeline_id, None)

    def terminate_all(self) -> None:
        for pipeline_id in self.ids():
            try:
                self.terminate(pipeline_id)
            except PipelineNotFound:
                pass

    def _running(self) -> int:
        return sum(not pipeline.finished for pipeline in self._pipelines.values())

    def _forget_old_ended(self) -> None:
        ended = sorted((p.ended_at or 0.0, p.pipeline_id) for p in self._pipelines.values() if p.finished)
        for _, pipeline_id in ended[: max(0, len(ended) - self.max_running)]:
            del self._pipelines[pipeline_id]
