"""What every stream sink offers the pipeline, and the parts several sinks share.

The pipeline calls `put` once per batch (one entry per source, `None` for a source without a frame in the batch)
from its own thread, and `close` once at the end. `put` must return quickly and memory must stay bounded however
slow whatever sits behind the sink is: sinks with slow work (encoding, network) hand it to a thread of their own
through a `DropOldestQueue`, which forgets the oldest item (and counts it) rather than grow or block.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from visionserve.streams.frames import FrameResult

CLOSE_S = 4.5  # a sink's close returns within this (the pipeline's bound is 5 s)
T = TypeVar("T")


@runtime_checkable
class Sink(Protocol):
    def put(self, results: Sequence[FrameResult | None]) -> None:
        """Take one batch; never blocks for long (MemorySink in wait mode excepted)."""

    def close(self) -> None:
        """No more batches: flush, release files, stop threads, within `CLOSE_S`."""

    def status(self) -> dict[str, Any]:
        """Counters for the pipeline's status report (JSON-ready)."""


def result_record(result: FrameResult) -> dict[str, Any]:
    """The JSON record of one frame's result, as JSON Lines files, webhooks and live feeds carry it."""
    frame = result.frame
    return {"source_id": frame.source_id, "frame_id": frame.frame_id,
            "frame_timestamp": frame.frame_timestamp.isoformat(), "latency_s": result.latency_s,
            "output": result.output}  # fmt: skip


class DropOldestQueue(Generic[T]):
    """A bounded hand-over between the pipeline thread and one worker thread: `offer` never blocks; when full the
    oldest item is forgotten and counted in `dropped`."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the queue size must be at least 1")
        self._items: deque[T] = deque()
        self._size = size
        self._ready = threading.Condition()
        self._closed = False
        self.dropped = 0

    def offer(self, item: T) -> None:
        with self._ready:
            if self._closed:
                self.dropped += 1
                return
            if len(self._items) >= self._size:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._ready.notify()

    def take(self) -> T | None:
        """The oldest item, waiting for one; None once closed and empty."""
        with self._ready:
            while not self._items and not self._closed:
                self._ready.wait()
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Wake the worker: it takes what is left, then gets None."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def discard(self) -> None:
        """Forget what is left (counted): the worker ran out of time."""
        with self._ready:
            self.dropped += len(self._items)
            self._items.clear()

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)


def stop_worker(queue: DropOldestQueue[Any], worker: threading.Thread, seconds: float = CLOSE_S) -> None:
    """Close the queue and give the worker `seconds` to finish; past half of it, what is still queued is dropped so
    the worker can wrap up (flush, close its files) in the rest."""
    queue.close()
    ends = time.monotonic() + seconds
    worker.join(seconds / 2)
    if worker.is_alive():
        queue.discard()
        worker.join(max(ends - time.monotonic(), 0.0))
