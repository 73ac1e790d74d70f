"""Frame sources for stream pipelines: one background thread per source decodes into a bounded buffer, so memory
never grows with a slow consumer, and `open_source` never blocks on the network.

Files (and folders, globs, HLS, video files over HTTP) default to WAIT + LAZY: every frame, in order, none dropped.
Live sources (RTSP, RTMP, MJPEG/HTTP streams, cameras, pushed frames) default to DROP_OLDEST + EAGER: the consumer
gets the newest frame, and network ones reconnect with exponential backoff until closed. When the newest frame is
already more than half a frame period old, the next one is due sooner than that: EAGER waits for it (at most 1.25
periods after the newest came), so a model slower than the camera starts each pass on a frame at most half a
period old (an eighth on average, against half before), for an eighth of a period idle per pass on average.
RTSP goes over TCP; add `transport=udp` to the URL's query (`rtsp://cam/stream?transport=udp`) for UDP; that
parameter is removed before connecting, other query parameters are kept.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from visionserve.streams import decoding
from visionserve.streams.decoding import Producer, Stopped
from visionserve.streams.frames import SourceProperties, SourceState, VideoFrame
from visionserve.streams.source_options import ConsumptionStrategy, FillingStrategy, SourceOptions
from visionserve.streams.source_policy import parse_reference, printable_reference

PushedFrames = Iterable[np.ndarray] | Callable[[], np.ndarray | None]
_FPS_WINDOW = 30
FRESHER_WAIT_PERIODS = 1.25  # EAGER: how long after the newest frame came the next one is waited for, in periods


class FrameSource:
    """One source's buffer, state and counters; a decode loop (`decoding`) fills it from a background thread."""

    def __init__(self, reference: str, source_id: int, options: SourceOptions, *, is_live: bool,
                 producer: Producer) -> None:  # fmt: skip
        self.source_id = source_id
        self.reference = reference
        self.is_live = is_live
        self.options = options
        paced_like_live = is_live or options.realtime_files
        self.filling = options.filling or (FillingStrategy.DROP_OLDEST if paced_like_live else FillingStrategy.WAIT)
        self.consumption = options.consumption or (
            ConsumptionStrategy.EAGER if paced_like_live else ConsumptionStrategy.LAZY
        )
        self.state = SourceState.INITIALISING
        self.properties: SourceProperties | None = None
        self.frames_read = 0
        self.frames_dropped = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self._buffer: collections.deque[VideoFrame] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._paused = False
        self._producing = True
        self._arrivals: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)
        self._buffered_at: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)  # when frames went in
        self._next_due = 0.0
        self._origin: tuple[float, float, datetime] | None = None  # (monotonic, pts, wall clock) of the first frame
        self._thread = threading.Thread(target=self._run, args=(producer,), name=f"frame-source-{source_id}",
                                        daemon=True)  # fmt: skip

    # -- consumer side --------------------------------------------------------------------------------------------

    def read(self, timeout: float) -> VideoFrame | None:
        """The next frame per the consumption strategy; None on timeout or when the source has ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._buffer:
                remaining = deadline - time.monotonic()
                if not self._producing or self._stop.is_set() or remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self.consumption is ConsumptionStrategy.EAGER:
                self._wait_for_fresher(deadline)
                if not self._buffer:  # closed while waiting
                    return None
                frame = self._buffer.pop()
                self.frames_dropped += len(self._buffer)
                self._buffer.clear()
            else:
                frame = self._buffer.popleft()
            self._cond.notify_all()
            return frame

    def _wait_for_fresher(self, deadline: float) -> None:
        """A live source's newest frame older than half its period: wait (under the lock) for the next, due sooner."""
        stamps = self._buffered_at
        if not self.is_live or len(stamps) < 2:
            return
        period = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        newest = self._buffer[-1]
        if period <= 0 or time.monotonic() - newest.capture_monotonic <= period / 2:
            return
        until = min(deadline, newest.capture_monotonic + FRESHER_WAIT_PERIODS * period)
        while self._buffer and self._buffer[-1] is newest and self._producing and not self._stop.is_set():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    @property
    def ended(self) -> bool:
        with self._cond:
            return (not self._producing or self._stop.is_set()) and not self._buffer

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def pause(self) -> None:
        """Stop taking frames: a live source keeps its connection and discards what arrives, a file waits."""
        with self._cond:
            self._paused = True
            if self.state is SourceState.RUNNING:
                self.state = SourceState.PAUSED

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            if self.state is SourceState.PAUSED:
                self.state = SourceState.RUNNING
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the decode thread from any state. Returns within `timeout` even when the thread is blocked in a
        connect (it is then bounded by open_timeout_s and exits on its own, releasing its container)."""
        with self._cond:
            if self.state not in (SourceState.ENDED, SourceState.ERROR):
                self.state = SourceState.TERMINATING
            self._stop.set()
            self._buffer.clear()
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._cond:
            if self.state is SourceState.TERMINATING:
                self.state = SourceState.ENDED

    def status(self) -> dict[str, Any]:
        with self._cond:
            props = self.properties
            return {
                "source_id": self.source_id,
                "source_reference": self.reference,
                "state": self.state.value,
                "buffer_size": self.options.buffer_size,
                "frames_buffered": len(self._buffer),
                "frames_read": self.frames_read,
                "frames_dropped": self.frames_dropped,
                "reconnects": self.reconnects,
                "last_error": self.last_error,
                "buffer_filling_strategy": self.filling.value,
                "buffer_consumption_strategy": self.consumption.value,
                "source_properties": None if props is None else {
                    "width": props.width, "height": props.height, "total_frames": props.total_frames,
                    "is_file": props.is_file, "fps": props.fps,
                },
            }  # fmt: skip

    # -- producer side (called from the decode thread) ------------------------------------------------------------

    def start(self) -> FrameSource:
        self._thread.start()
        return self

    def connected(self, properties: SourceProperties | None) -> None:
        with self._cond:
            if self._stop.is_set():  # closed while connecting: release the container at once
                raise Stopped
            if properties is not None:
                self.properties = properties
            self.state = SourceState.PAUSED if self._paused else SourceState.RUNNING

    def restarting(self, error: str) -> None:
        """The connection failed or ended: a reconnection attempt follows (counted in `reconnects`)."""
        with self._cond:
            if self._stop.is_set():
                raise Stopped
            self.last_error = error
            self.reconnects += 1
            self.state = SourceState.RESTARTING

    def sleep(self, seconds: float) -> None:
        """Wait, unless closed first (then raise Stopped)."""
        if self._stop.wait(max(0.0, seconds)):
            raise Stopped

    def emit(self, image: np.ndarray, pts: float | None = None) -> None:
        """Pace, stamp and buffer one decoded BGR frame per the source's strategies."""
        if self._stop.is_set():
            raise Stopped
        now = time.monotonic()
        with self._cond:
            self.frames_read += 1
            frame_id = self.frames_read
            self._arrivals.append(now)
            if self._paused and self.is_live:
                return
            while self._paused and not self._stop.is_set():
                self._cond.wait(0.2)
        if self.is_live:
            if not self._live_rate_allows(now):
                self._count_drop()
                return
        else:
            now = self._pace_file(pts)
        self._put(VideoFrame(image=image, frame_id=frame_id, frame_timestamp=self._timestamp(now, pts),
                             capture_monotonic=now, source_id=self.source_id, fps=self._declared_fps(),
                             measured_fps=self._measured_fps(), comes_from_video_file=not self.is_live))  # fmt: skip

    def _live_rate_allows(self, now: float) -> bool:
        """max_fps on a live source: take a frame per period (a little early is fine: arrival jitter), drop the rest."""
        if not self.options.max_fps:
            return True
        period = 1.0 / self.options.max_fps
        if now + 0.1 * period < self._next_due:
            return False
        self._next_due = max(self._next_due, now - 0.5 * period) + period
        return True

    def _pace_file(self, pts: float | None) -> float:
        """Hold a file's frame until max_fps (and, with realtime_files, its presentation time) allows it."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = (now, pts or 0.0, datetime.now(timezone.utc))
        due = now
        if self.options.max_fps:
            due = max(due, self._next_due)
        if self.options.realtime_files and pts is not None:
            due = max(due, self._origin[0] + pts - self._origin[1])
        self.sleep(due - now)
        now = time.monotonic()
        if self.options.max_fps:
            period = 1.0 / self.options.max_fps
            self._next_due = max(self._next_due + period, now) if self._next_due else now + period
        return now

    def _timestamp(self, now: float, pts: float | None) -> datetime:
        """Files: the first frame's wall clock plus the frame's presentation time; live: the wall clock now."""
        if not self.is_live and pts is not None and self._origin is not None:
            return self._origin[2] + timedelta(seconds=pts - self._origin[1])
        return datetime.now(timezone.utc) - timedelta(seconds=time.monotonic() - now)

    def _declared_fps(self) -> float | None:
        return self.properties.fps if self.properties else None

    def _measured_fps(self) -> float | None:
        arrivals = self._arrivals
        if len(arrivals) < 2 or arrivals[-1] <= arrivals[0]:
            return None
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])

    def _count_drop(self) -> None:
        with self._cond:
            self.frames_dropped += 1

    def _put(self, frame: VideoFrame) -> None:
        with self._cond:
            size = max(1, self.options.buffer_size)
            if self.filling is FillingStrategy.WAIT:
                while len(self._buffer) >= size:
                    if self._stop.is_set():
                        raise Stopped
                    self._cond.wait(0.2)
            elif len(self._buffer) >= size:
                self.frames_dropped += 1
                if self.filling is FillingStrategy.DROP_LATEST:
                    return
                self._buffer.popleft()
            self._buffer.append(frame)
            self._buffered_at.append(frame.capture_monotonic)
            self._cond.notify_all()

    def _run(self, producer: Producer) -> None:
        final, error = SourceState.ENDED, None
        try:
            producer(self)
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - any failure of the source ends it with its message
            final, error = SourceState.ERROR, str(exc) or type(exc).__name__
        with self._cond:
            self._producing = False
            if error is not None:
                self.last_error = error
            if not self._stop.is_set() or final is SourceState.ERROR:
                self.state = final
            self._cond.notify_all()


def open_source(reference: str | int | PushedFrames, source_id: int, options: SourceOptions) -> FrameSource:
    """Start a source in the background and return it at once (state INITIALISING). References are assumed to
    have passed `source_policy.check_reference`."""
    if isinstance(reference, (str, int)) and not isinstance(reference, bool):
        parsed = parse_reference(reference)
        live = not parsed.is_file_like
        if parsed.kind in ("folder", "glob"):
            producer = decoding.images_producer(parsed)
        else:
            producer = decoding.av_producer(parsed, live)
        return FrameSource(printable_reference(str(reference)), source_id, options, is_live=live,
                           producer=producer).start()  # fmt: skip
    if callable(reference) or isinstance(reference, Iterable):
        return FrameSource("pushed frames", source_id, options, is_live=True,
                           producer=decoding.pushed_producer(reference)).start()  # fmt: skip
    raise TypeError(f"cannot open a stream source from {type(reference).__name__}")
