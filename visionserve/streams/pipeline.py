"""One running pipeline: its sources feed a thread that takes one frame per source (frames of the same instant go
into one batch, one forward pass), hands them to its processor, and gives the results to its sinks.

Pause stops inference (live sources keep their connection and drop, as the reference's "mute"); terminate works
from every state, including while a source is still connecting; a pipeline whose sources all ended keeps its
unconsumed results (the memory sink) until they are read or it is terminated.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visionserve.errors import VisionServeError
from visionserve.streams.frames import FrameResult, SourceState, VideoFrame
from visionserve.streams.processing import FrameProcessor
from visionserve.streams.sinks.base import Sink
from visionserve.streams.sinks.memory import Batch, MemorySink
from visionserve.streams.source_options import ConsumptionStrategy
from visionserve.streams.sources import FrameSource

logger = logging.getLogger(__name__)
Rows = list[list[VideoFrame | None]]  # a batch: rows of one frame per source, None where a source had none
LATENCY_WINDOW = 256  # results whose latencies make the p50 / p95
MAX_CONSECUTIVE_FAILURES = 3  # batches failing one after another before the pipeline stops in ERROR
IDLE_READ_S = 0.2  # how long one read waits for a frame (bounds how fast pause and terminate take effect)


@dataclass
class SourceFigures:
    inferred: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    stamps: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))  # monotonic, per result

    def add(self, latency: float, now: float) -> None:
        self.inferred += 1
        self.latencies.append(latency)
        self.stamps.append(now)

    def report(self) -> dict[str, Any]:
        latencies = np.array(self.latencies) if self.latencies else None
        span = self.stamps[-1] - self.stamps[0] if len(self.stamps) > 1 else 0.0
        return {
            "frames_inferred": self.inferred,
            "fps": round((len(self.stamps) - 1) / span, 2) if span > 0 else None,
            "latency_p50_s": None if latencies is None else round(float(np.percentile(latencies, 50)), 4),
            "latency_p95_s": None if latencies is None else round(float(np.percentile(latencies, 95)), 4),
        }


def _present(rows: Rows) -> list[VideoFrame]:
    """The batch's frames, row by row, each source in order."""
    return [frame for row in rows for frame in row if frame is not None]


class Pipeline:
    def __init__(
        self, pipeline_id: str, sources: Sequence[FrameSource], processor: FrameProcessor, memory: MemorySink,
        sinks: Sequence[Sink] = (), batch_collection_timeout: float | None = None,
        consumption_timeout: float | None = None, description: dict[str, Any] | None = None, depth: int = 1,
    ) -> None:
        self.pipeline_id = pipeline_id
        self.sources = list(sources)
        self.processor = processor
        self.memory = memory
        self.sinks = [memory, *sinks]
        self.batch_collection_timeout = batch_collection_timeout
        self.consumption_timeout = consumption_timeout
        # File sources: `depth` (the passes the cores run at once) pass threads when the processor allows it, each
        # pass of one row (a frame per source), so no core waits for a whole batch to end, and one pass more in
        # flight than threads, queued, so a thread that ends a pass starts the next at once instead of idling while
        # this thread delivers; else `depth` rows in one batch. Live sources: one row at a time, the newest frame
        # when a pass can start.
        files_only = all(source.consumption is ConsumptionStrategy.LAZY for source in self.sources)
        threads = max(1, depth) if files_only and processor.order_free else 0
        self._window = threads + 1 if threads else 1
        self._rows_per_batch = max(1, depth) if files_only and not threads else 1
        name = f"pipeline-{pipeline_id[:8]}-pass"
        self._passes = ThreadPoolExecutor(threads, name) if threads else None
        self.description = description or {}
        self.state = SourceState.INITIALISING
        self.last_error: str | None = None
        self.errors = 0
        self.figures = {source.source_id: SourceFigures() for source in self.sources}
        self.created = time.time()
        self.last_consumed = time.monotonic()
        self.ended_at: float | None = None
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"pipeline-{pipeline_id[:8]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the pipeline's thread is done (every source ended, or terminated)."""
        self._thread.join(timeout)

    # control, from any thread and any state
    def pause(self) -> None:
        if not self.finished:
            self._running.clear()
            self.state = SourceState.MUTED
            for source in self.sources:
                source.pause()

    def resume(self) -> None:
        if not self.finished:
            for source in self.sources:
                source.resume()
            self._running.set()
            self.state = SourceState.RUNNING

    def terminate(self, timeout: float = 10.0) -> None:
        self.state = SourceState.TERMINATING if not self.finished else self.state
        self._stop.set()
        self._running.set()
        self.memory.abort()  # a pipeline waiting for a consumer must not wait any more
        for source in self.sources:
            source.close(timeout=min(5.0, timeout))
        self._thread.join(timeout)
        if self.state is SourceState.TERMINATING:
            self.state = SourceState.ENDED

    @property
    def finished(self) -> bool:
        return self.state in (SourceState.ENDED, SourceState.ERROR)

    def consume(self) -> Batch:
        """The oldest unread batch (outputs, frames metadata); ([], []) when none waits."""
        self.last_consumed = time.monotonic()
        return self.memory.consume()

    def consume_many(self, max_results: int) -> list[Batch]:
        self.last_consumed = time.monotonic()
        return self.memory.consume_many(max_results)

    @property
    def results_waiting(self) -> int:
        return self.memory.status()["results_waiting"]

    # the pipeline's own thread
    def _loop(self) -> None:
        in_flight: deque[tuple[Rows, Future[Any]]] = deque()
        try:
            while not self._stop.is_set():
                if not self._running.wait(IDLE_READ_S):
                    continue
                rows = self._collect() if len(in_flight) < self._window else []
                if rows is None:
                    while in_flight:
                        self._deliver(*in_flight.popleft())
                    self._finish(SourceState.ENDED)
                    return
                if rows:
                    in_flight.append((rows, self._start(rows)))
                if in_flight and (len(in_flight) >= self._window or not rows or in_flight[0][1].done()):
                    self._deliver(*in_flight.popleft())
                self._check_consumption()
        except Exception as error:  # noqa: BLE001 - a pipeline must end in a state, never die silently
            logger.exception("pipeline %s failed", self.pipeline_id)
            self.last_error = f"{type(error).__name__}: {error}"
            self._finish(SourceState.ERROR)
            return
        self._finish(SourceState.ENDED)

    def _collect(self) -> Rows | None:
        """Rows of one frame per source (None for a source with none in time); None once every source has ended.
        A source read frame by frame (a file) gives up to `_rows_per_batch` buffered frames at once, one row each,
        and the other such sources as many (rows stay frames of the same instant); a live source gives its newest
        frame only."""
        if all(source.ended for source in self.sources):
            return None
        wait = self.batch_collection_timeout if self.batch_collection_timeout is not None else IDLE_READ_S
        deadline = time.monotonic() + wait
        per_source: list[list[VideoFrame]] = []
        count: int | None = None  # frames per source in this batch: what the first source had, the others match it
        for index, source in enumerate(self.sources):
            frames: list[VideoFrame] = []
            frame = source.read(timeout=max(0.0, deadline - time.monotonic()) if index else wait)
            while frame is not None:
                frames.append(frame)
                if len(frames) >= (count or self._rows_per_batch) or source.consumption is not ConsumptionStrategy.LAZY:
                    break
                frame = source.read(timeout=0 if count is None else max(0.0, deadline - time.monotonic()))
            if frames and count is None and source.consumption is ConsumptionStrategy.LAZY:
                count = len(frames)
            per_source.append(frames)
        rows = [list(row) for row in itertools.zip_longest(*per_source)]
        if rows and self.state is SourceState.INITIALISING:
            self.state = SourceState.RUNNING
        return rows

    def _start(self, rows: Rows) -> Future[Any]:
        """The batch's forward pass: on a pass thread when several may be in flight, else here and now."""
        present = _present(rows)
        if self._passes is not None:
            return self._passes.submit(self.processor.infer, present)
        done: Future[Any] = Future()
        try:
            done.set_result(self.processor.infer(present))
        except Exception as error:  # noqa: BLE001 - handed to `_deliver`, as a pass thread's would be
            done.set_exception(error)
        return done

    def _deliver(self, rows: Rows, inferred: Future[Any]) -> None:
        """In frame order: finish the batch (tracking, counting) and give its results to the sinks."""
        present = _present(rows)
        try:
            answers = self.processor.finish(present, inferred.result())
        except VisionServeError as error:
            self.errors += 1
            self.last_error = error.message
            logger.warning("pipeline %s: %s", self.pipeline_id, error.message)
            if self.errors >= MAX_CONSECUTIVE_FAILURES:
                raise
            return
        self.errors = 0
        now = time.monotonic()
        by_frame = iter(answers)
        for row in rows:
            results: list[FrameResult | None] = []
            for frame in row:
                if frame is None:
                    results.append(None)
                    continue
                output, predictions = next(by_frame)
                latency = now - frame.capture_monotonic
                self.figures[frame.source_id].add(latency, now)
                results.append(FrameResult(frame, output, predictions, latency))
            for sink in self.sinks:
                sink.put(results)

    def _check_consumption(self) -> None:
        if self.consumption_timeout is not None and time.monotonic() - self.last_consumed > self.consumption_timeout:
            self.last_error = f"nobody consumed results for {self.consumption_timeout} s (consumption_timeout)"
            self._stop.set()

    def _finish(self, state: SourceState) -> None:
        if self._passes is not None:
            self._passes.shutdown(wait=True, cancel_futures=True)  # a pass under way ends before the pipeline does
        for source in self.sources:
            source.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001 - one sink failing to close must not keep the others open
                logger.exception("pipeline %s: closing a sink failed", self.pipeline_id)
        if self.state is not SourceState.TERMINATING or state is SourceState.ERROR:
            self.state = state
        self.ended_at = time.monotonic()

    def report(self) -> dict[str, Any]:
        """Status: the reference's `PipelineStateReport` fields, and ours (state, counts, FPS, latency, errors)."""
        sources = [source.status() for source in self.sources]
        per_source = [{**status, **self.figures[status["source_id"]].report()} for status in sources]
        return {
            "state": self.state.value,
            "last_error": self.last_error,
            "sources": per_source,
            "sinks": [sink.status() for sink in self.sinks],
            "results_waiting": self.results_waiting,
            "inference_throughput": sum(item["fps"] or 0 for item in per_source),
            "latency_reports": [{"source_id": item["source_id"], "e2e_latency": item["latency_p50_s"]}
                                for item in per_source],  # fmt: skip
            "sources_metadata": [{key: status.get(key) for key in (
                "source_id", "source_reference", "state", "buffer_size", "buffer_filling_strategy",
                "buffer_consumption_strategy", "source_properties")} for status in sources],  # fmt: skip
            "video_source_status_updates": [],
            **self.description,
        }
