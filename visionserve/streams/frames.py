"""What flows out of a source: decoded frames with the reference's `VideoFrame` fields, and the source's properties."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from enum import Enum

import numpy as np


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame. `frame_id` counts from 1 per source, as the reference does; `frame_timestamp` is when it
    was captured (wall clock, UTC) and `capture_monotonic` the same instant on the monotonic clock (latency)."""

    image: np.ndarray  # (H, W, 3) uint8, BGR
    frame_id: int
    frame_timestamp: datetime
    capture_monotonic: float
    source_id: int
    fps: float | None  # declared by the source (container or stream); None: unknown
    measured_fps: float | None
    comes_from_video_file: bool


@dataclass(frozen=True)
class SourceProperties:
    width: int | None
    height: int | None
    total_frames: int | None  # None for live sources
    is_file: bool
    fps: float | None


class SourceState(str, Enum):
    """The reference's StreamState names, for status reports."""

    NOT_STARTED = "NOT_STARTED"
    INITIALISING = "INITIALISING"
    RESTARTING = "RESTARTING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    MUTED = "MUTED"
    TERMINATING = "TERMINATING"
    ENDED = "ENDED"
    ERROR = "ERROR"


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline made of one frame: the serialised outputs (JSON-ready: the workflow's output dict for this
    frame, or a model's predictions answer) and the predictions to draw (the usual `/infer` detections JSON, with
    `tracker_id` when tracking is on; None when the pipeline has nothing to draw)."""

    frame: VideoFrame
    output: dict[str, Any]
    predictions: dict[str, Any] | None
    latency_s: float  # capture to result

    def frame_metadata(self) -> dict[str, Any]:
        """The reference's `frames_metadata` entry."""
        return {
            "frame_timestamp": self.frame.frame_timestamp.isoformat(),
            "frame_id": self.frame.frame_id,
            "source_id": self.frame.source_id,
        }
