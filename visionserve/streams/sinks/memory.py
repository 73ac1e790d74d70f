"""Results kept in memory until a client consumes them (the reference's `MemorySinkConfiguration`).

The reference keeps `results_buffer_size` batches and silently overwrites the oldest; here dropped batches are
counted (`results_dropped` in the status) and, for file sources, `wait_when_full` makes the pipeline wait for the
consumer instead, so nothing is lost. Batches are stored as JSON-ready outputs and frame metadata only: no frame
images stay referenced, so a full buffer costs little memory. Results left after the pipeline ends stay readable.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from visionserve.streams.frames import FrameResult

Outputs = list[dict[str, Any] | None]
Batch = tuple[Outputs, Outputs]  # (outputs, frames_metadata), one entry per source


class MemorySink:
    def __init__(self, results_buffer_size: int = 64, wait_when_full: bool = False) -> None:
        if results_buffer_size < 1:
            raise ValueError("results_buffer_size must be at least 1")
        self._buffer: deque[Batch] = deque()
        self._size = results_buffer_size
        self._wait = wait_when_full
        self._changed = threading.Condition()
        self._closed = False
        self._aborted = False
        self._dropped = 0

    def put(self, results: Sequence[FrameResult | None]) -> None:
        """Keep the batch; when full, wait for a consume (wait mode) or forget the oldest batch (counted)."""
        batch = ([None if r is None else r.output for r in results],
                 [None if r is None else r.frame_metadata() for r in results])  # fmt: skip
        with self._changed:
            if self._wait:
                while len(self._buffer) >= self._size and not (self._closed or self._aborted):
                    self._changed.wait()
            if self._closed:
                self._dropped += 1
                return
            if len(self._buffer) >= self._size:
                self._buffer.popleft()
                self._dropped += 1
            self._buffer.append(batch)

    def consume(self) -> Batch:
        """The oldest batch, removed: (outputs, frames_metadata) with one entry per source; ([], []) when empty."""
        with self._changed:
            if not self._buffer:
                return [], []
            batch = self._buffer.popleft()
            self._changed.notify_all()
            return batch

    def consume_many(self, max_items: int) -> list[Batch]:
        """Up to `max_items` of the oldest batches, removed, oldest first."""
        with self._changed:
            count = min(max(max_items, 0), len(self._buffer))
            batches = [self._buffer.popleft() for _ in range(count)]
            if batches:
                self._changed.notify_all()
            return batches

    def abort(self) -> None:
        """Stop waiting for the consumer (it went away, or the pipeline is being terminated): a put blocked in wait
        mode returns, and later puts forget the oldest batch instead of waiting."""
        with self._changed:
            self._aborted = True
            self._changed.notify_all()

    def close(self) -> None:
        """The pipeline ended: a blocked put returns (its batch counted as dropped); buffered batches stay readable."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def status(self) -> dict[str, Any]:
        with self._changed:
            return {"type": "memory", "results_waiting": len(self._buffer), "results_dropped": self._dropped,
                    "results_buffer_size": self._size, "wait_when_full": self._wait and not self._aborted,
                    "closed": self._closed}  # fmt: skip
