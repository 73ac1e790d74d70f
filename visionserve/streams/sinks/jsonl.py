"""Results appended to a JSON Lines file: one line per frame result, flushed after each batch so a reader following
the file sees whole batches. A write error (disk full, file gone) is recorded in the status and stops the sink:
the pipeline keeps running, its other sinks too."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from visionserve.streams.frames import FrameResult
from visionserve.streams.sinks.base import result_record

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


class JsonLinesSink:
    def __init__(self, path: str | Path) -> None:
        """Opens (appending to) the file now, so a path that cannot be written fails the pipeline's creation."""
        self._path = Path(path)
        self._file = self._path.open("ab")
        self._lock = threading.Lock()
        self._written = 0
        self._error: str | None = None

    def put(self, results: Sequence[FrameResult | None]) -> None:
        with self._lock:
            if self._file.closed:
                return
            try:
                lines = [orjson.dumps(result_record(result), option=_OPTIONS) for result in results if result]
                self._file.write(b"".join(lines))
                self._file.flush()
            except (OSError, TypeError) as error:  # orjson.JSONEncodeError is a TypeError
                self._error = f"{type(error).__name__}: {error}"
                self._close_file()
                return
            self._written += len(lines)

    def close(self) -> None:
        with self._lock:
            self._close_file()

    def _close_file(self) -> None:
        try:
            self._file.close()  # flushes what a failed write left buffered; that may fail again
        except OSError as error:
            self._error = self._error or f"{type(error).__name__}: {error}"

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"type": "jsonl", "path": str(self._path), "lines_written": self._written,
                    "stopped": self._file.closed, "error": self._error}  # fmt: skip
