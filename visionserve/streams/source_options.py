"""How a source buffers and hands out frames: the reference's filling and consumption strategy names, and the
bounds and timeouts of one source (`sources.FrameSource` applies them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class FillingStrategy(str, Enum):
    """What the decoder does when the buffer is full. The reference's ADAPTIVE_* names are accepted as aliases."""

    WAIT = "WAIT"
    DROP_OLDEST = "DROP_OLDEST"
    DROP_LATEST = "DROP_LATEST"

    @classmethod
    def _missing_(cls, value: object) -> FillingStrategy | None:
        if isinstance(value, str) and value.upper().removeprefix("ADAPTIVE_") in cls.__members__:
            return cls[value.upper().removeprefix("ADAPTIVE_")]
        return None


class ConsumptionStrategy(str, Enum):
    LAZY = "LAZY"  # every buffered frame, oldest first
    EAGER = "EAGER"  # the newest buffered frame; older ones are dropped

    @classmethod
    def _missing_(cls, value: object) -> ConsumptionStrategy | None:
        return cls.__members__.get(value.upper()) if isinstance(value, str) else None


@dataclass(frozen=True)
class SourceOptions:
    buffer_size: int = 64  # decoded frames held, at most
    filling: FillingStrategy | None = None  # None: WAIT for files, DROP_OLDEST for live (and realtime files)
    consumption: ConsumptionStrategy | None = None  # None: LAZY for files, EAGER for live (and realtime files)
    max_fps: float | None = None  # files: held back to it; live: frames above it are dropped (counted)
    realtime_files: bool = False  # pace a file at its own pts, like a camera (and take a camera's defaults)
    max_pixels: int = 50_000_000  # a larger frame ends the source in ERROR
    reconnect_initial_s: float = 0.5  # live network sources and cameras: backoff doubles from here ...
    reconnect_max_s: float = 10.0  # ... up to here, forever until closed
    open_timeout_s: float = 10.0  # bounds each connect and each blocking read
    decode_threads: int = 1  # PyAV codec threads, capped at decoding.MAX_DECODE_THREADS
    video_source_properties: Mapping[str, Any] | None = None  # cameras: frame_width, frame_height, fps, fourcc
