"""A frame's place in its video, from the reference's video metadata (`video_identifier`, `frame_number`,
`frame_timestamp`, `fps`, `comes_from_video_file`): which video's state it belongs to, and its time in seconds."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

DEFAULT_FPS = 30.0


def video_identifier(metadata: Mapping[str, Any] | None, fallback: str) -> str:
    """The video a frame belongs to; an image with no metadata is its own video (the reference uses its id)."""
    identifier = (metadata or {}).get("video_identifier")
    return str(identifier) if identifier not in (None, "") else fallback


def frame_rate(metadata: Mapping[str, Any] | None) -> float:
    fps = (metadata or {}).get("fps")
    return float(fps) if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0 else DEFAULT_FPS


def frame_seconds(metadata: Mapping[str, Any] | None) -> float:
    """Frames of a video file are timed by their number and the file's fps (decoding speed does not matter); live
    frames by their capture timestamp; a frame without either by the wall clock now."""
    metadata = metadata or {}
    number = metadata.get("frame_number")
    if metadata.get("comes_from_video_file") and isinstance(number, int) and metadata.get("fps"):
        return number / frame_rate(metadata)
    stamp = metadata.get("frame_timestamp")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return float(stamp)
    return time.time()
