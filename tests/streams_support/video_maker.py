"""Tiny test videos whose frames carry their own number, so a reader can check order and that nothing was skipped.

The number is written in binary as 8 large black/white blocks along the top of the frame (robust to lossy codecs);
a white square moves below them so consecutive frames differ in content too.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 8


def numbered_frame(number: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A BGR frame showing `number` (0..255) as blocks, plus a square whose place depends on it."""
    image = np.full((height, width, 3), 60, np.uint8)
    block = width // BITS
    for bit in range(BITS):
        value = 255 if (number >> bit) & 1 else 0
        image[: height // 4, bit * block : (bit + 1) * block] = value
    side = height // 4
    x = (number * 7) % (width - side)
    image[height // 2 : height // 2 + side, x : x + side] = (40, 200, 240)
    return image


def read_number(image: np.ndarray) -> int:
    """The number `numbered_frame` wrote into this (possibly re-encoded, possibly resized-free) frame."""
    height, width = image.shape[:2]
    block = width // BITS
    number = 0
    for bit in range(BITS):
        patch = image[2 : height // 4 - 2, bit * block + 2 : (bit + 1) * block - 2]
        if patch.mean() > 128:
            number |= 1 << bit
    return number


def make_video(path: Path, frames: int = 64, codec: str = "libx264", fps: int = 25, width: int = 160,
               height: int = 120, container_format: str | None = None, options: dict[str, str] | None = None) -> Path:
    """Encode `frames` numbered frames (0..frames-1) with PyAV; returns the path (for HLS: the playlist)."""
    with av.open(str(path), "w", format=container_format, options=options or {}) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "g": str(fps), "bf": "0"}
        elif codec in ("libvpx-vp9", "libvpx"):
            stream.options = {"deadline": "realtime", "cpu-used": "8", "g": str(fps)}
        for number in range(frames):
            frame = av.VideoFrame.from_ndarray(numbered_frame(number, width, height), format="bgr24")
            frame.pts = number
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return path
