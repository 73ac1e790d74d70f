"""Annotated video files: every frame with its predictions drawn as `format=image` answers draw them
(`images.annotate.draw`), encoded to MP4 (H.264 with libx264 when the PyAV build has it, else MPEG-4 Part 2).

One file per source: source 0 writes `path` itself, source k > 0 writes `<stem>.source-<k><suffix>` next to it
(`out.mp4`, `out.source-1.mp4`, ...), so a one-source pipeline's file is exactly the path asked for. A file's size is
its first frame's (rounded down to even, as 4:2:0 video needs); frames of other sizes are resized to it. Frames are
written at a constant rate (`fps`, else the source's declared or measured rate, else 30), one after the other:
frames the stream skipped or this sink dropped shorten the video, they leave no gap.

Drawing and encoding run on the sink's own thread behind a bounded queue: when the encoder is slower than the
stream the oldest waiting frames are dropped and counted. An encoding or write error stops the sink (recorded in
the status); the pipeline keeps running.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from visionserve.images.annotate import draw
from visionserve.streams.frames import FrameResult
from visionserve.streams.sinks.base import DropOldestQueue, stop_worker

log = logging.getLogger(__name__)
DEFAULT_FPS = 30.0


def _codec() -> str:
    try:
        av.Codec("libx264", "w")
        return "libx264"
    except (av.FFmpegError, ValueError):  # the build has no H.264 encoder
        return "mpeg4"


CODEC = _codec()


def source_path(path: Path, source_id: int) -> Path:
    """Where the video of a source goes: `path` for source 0, `<stem>.source-<k><suffix>` for source k."""
    return path if source_id == 0 else path.with_name(f"{path.stem}.source-{source_id}{path.suffix}")


@dataclass(frozen=True)
class _Item:
    source_id: int
    image: np.ndarray
    predictions: dict[str, Any] | None
    source_fps: float | None


class _Encoder:
    """One source's file, opened at its first frame."""

    def __init__(self, path: Path, first: np.ndarray, fps: float) -> None:
        height, width = first.shape[:2]
        self.size = (max(width - width % 2, 2), max(height - height % 2, 2))
        self.path = path
        self._container = av.open(str(path), mode="w", format="mp4")
        options = {"preset": "veryfast"} if CODEC == "libx264" else {}
        self._stream = self._container.add_stream(CODEC, rate=Fraction(fps).limit_denominator(1001), options=options)
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = "yuv420p"
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def finish(self) -> None:
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()


class AnnotatedVideoSink:
    def __init__(self, path: str | Path, fps: float | None, *, stroke: int = 1, labels: bool = False,
                 queue_size: int = 32) -> None:  # fmt: skip
        """`stroke` and `labels` as the /infer routes take them. Fails now if the folder cannot be written."""
        self._path = Path(path)
        if not os.access(self._path.parent, os.W_OK):
            raise PermissionError(f"cannot write videos into {self._path.parent}")
        if fps is not None and not fps > 0:
            raise ValueError("fps must be positive")
        self._fps = fps
        self._stroke, self._labels = stroke, labels
        self._queue: DropOldestQueue[_Item] = DropOldestQueue(queue_size)
        self._encoders: dict[int, _Encoder] = {}
        self._lock = threading.Lock()
        self._error: str | None = None
        self._worker = threading.Thread(target=self._run, name="visionserve-video-sink", daemon=True)
        self._worker.start()

    def put(self, results: Sequence[FrameResult | None]) -> None:
        if self._error is not None:
            return
        for result in results:
            if result is not None:
                frame = result.frame
                self._queue.offer(_Item(frame.source_id, frame.image, result.predictions,
                                        frame.fps or frame.measured_fps))  # fmt: skip

    def close(self) -> None:
        stop_worker(self._queue, self._worker)
        if self._worker.is_alive():
            log.warning("the video encoder of %s did not finish in time", self._path)

    def status(self) -> dict[str, Any]:
        with self._lock:
            encoders = sorted(self._encoders.items())
            return {"type": "video", "codec": CODEC, "paths": [str(e.path) for _, e in encoders],
                    "frames_written": sum(e.frames for _, e in encoders), "frames_dropped": self._queue.dropped,
                    "error": self._error, "running": self._worker.is_alive()}  # fmt: skip

    def _run(self) -> None:
        try:
            while (item := self._queue.take()) is not None:
                self._encode(item)
        except (av.FFmpegError, OSError, ValueError) as error:
            self._fail(error)
        for encoder in list(self._encoders.values()):
            try:
                encoder.finish()
            except (av.FFmpegError, OSError, ValueError) as error:
                self._fail(error)

    def _encode(self, item: _Item) -> None:
        image = item.image if item.predictions is None else draw(item.image, item.predictions, self._stroke,
                                                                 self._labels)  # fmt: skip
        encoder = self._encoders.get(item.source_id)
        if encoder is None:
            fps = self._fps or item.source_fps or DEFAULT_FPS
            encoder = _Encoder(source_path(self._path, item.source_id), image, fps)
            with self._lock:
                self._encoders[item.source_id] = encoder
        encoder.write(image)

    def _fail(self, error: Exception) -> None:
        log.warning("the video sink of %s stopped: %s", self._path, error)
        with self._lock:
            self._error = self._error or f"{type(error).__name__}: {error}"
        self._queue.close()
        self._queue.discard()
