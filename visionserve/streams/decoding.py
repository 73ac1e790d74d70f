"""The decode loops behind a source, run on its background thread: PyAV containers (files, network streams,
cameras; live ones reconnect with backoff), folders of images, and pushed in-process frames. Each turns what it reads
into contiguous BGR uint8 arrays, refusing oversized frames, and hands them to a `FrameSink` (the FrameSource).
"""

from __future__ import annotations

import glob
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import av.container
import cv2
import numpy as np

from visionserve.streams.frames import SourceProperties
from visionserve.streams.source_policy import ParsedReference, printable_reference

MAX_DECODE_THREADS = 16
# cv2 FOURCC names a camera may be asked for, as ffmpeg's v4l2 `input_format` names.
_FOURCCS = {"MJPG": "mjpeg", "YUYV": "yuyv422", "H264": "h264"}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class FrameTooLarge(Exception):
    """A frame has more pixels than the source allows: fatal, never retried."""


class SourceFailed(Exception):
    """A file-like source failed for good; the message has any URL credentials masked."""


class Stopped(Exception):
    """Raised inside the decode thread when the source is closed, to unwind it (and release its container)."""


class SourceSettings(Protocol):
    """The SourceOptions a decode loop reads (read-only: the options are a frozen dataclass)."""

    @property
    def max_pixels(self) -> int: ...

    @property
    def reconnect_initial_s(self) -> float: ...

    @property
    def reconnect_max_s(self) -> float: ...

    @property
    def open_timeout_s(self) -> float: ...

    @property
    def decode_threads(self) -> int: ...

    @property
    def video_source_properties(self) -> Mapping[str, Any] | None: ...


class FrameSink(Protocol):
    """What a decode loop needs from its source."""

    options: SourceSettings
    last_error: str | None

    def connected(self, properties: SourceProperties | None) -> None: ...

    def restarting(self, error: str) -> None: ...

    def sleep(self, seconds: float) -> None: ...

    def emit(self, image: np.ndarray, pts: float | None = None) -> None: ...


Producer = Callable[[FrameSink], None]


@dataclass(frozen=True)
class OpenSpec:
    """How to open one reference with PyAV."""

    target: str
    format: str | None
    options: dict[str, str]


def _too_large(width: int, height: int, max_pixels: int) -> FrameTooLarge | None:
    if width * height <= max_pixels:
        return None
    return FrameTooLarge(f"a frame of {width}x{height} has more than the {max_pixels} pixels a stream frame may have")


def open_spec(parsed: ParsedReference, properties: Mapping[str, Any] | None) -> OpenSpec:
    """The target, demuxer and ffmpeg options for a reference. RTSP: TCP unless the URL asks `transport=udp`."""
    if parsed.kind == "camera":
        return OpenSpec(parsed.target, "v4l2", camera_options(properties))
    options = {"protocol_whitelist": parsed.protocol_whitelist}
    target = parsed.target
    if parsed.scheme in ("rtsp", "rtsps"):
        split = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        transport = next((v.lower() for k, v in query if k == "transport"), "tcp")
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport={transport} is not an RTSP transport (tcp or udp)")
        options["rtsp_transport"] = transport
        kept = urllib.parse.urlencode([(k, v) for k, v in query if k != "transport"])
        target = urllib.parse.urlunsplit(split._replace(query=kept))
    return OpenSpec(target, None, options)


def camera_options(properties: Mapping[str, Any] | None) -> dict[str, str]:
    """ffmpeg v4l2 options from the reference's cv2 CAP_PROP names (best effort; unknown keys are ignored)."""
    properties = properties or {}
    options: dict[str, str] = {}
    width, height = properties.get("frame_width"), properties.get("frame_height")
    if width and height:
        options["video_size"] = f"{int(width)}x{int(height)}"
    if properties.get("fps"):
        options["framerate"] = str(float(properties["fps"]))
    fourcc = str(properties.get("fourcc", "")).upper()
    if fourcc in _FOURCCS:
        options["input_format"] = _FOURCCS[fourcc]
    return options


def codec_threads(settings: SourceSettings) -> int:
    """The decoder's threads (and its colour conversion's): the setting, within 1 and `MAX_DECODE_THREADS`."""
    return max(1, min(settings.decode_threads, MAX_DECODE_THREADS))


def open_container(spec: OpenSpec, *, open_timeout: float, read_timeout: float, threads: int,
                   live: bool) -> av.container.InputContainer:  # fmt: skip
    """Open the container and set up its first video stream's decoder. PyAV's timeouts interrupt any blocking
    ffmpeg call (connect, handshake, read) that takes longer, so the decode thread always comes back."""
    container = av.open(spec.target, format=spec.format, options=spec.options, timeout=(open_timeout, read_timeout))
    try:
        if not container.streams.video:
            raise ValueError("the source has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE" if live else "AUTO"  # frame threading would add frames of latency to live
        stream.codec_context.thread_count = threads
    except BaseException:
        container.close()
        raise
    return container


def properties_of(container: av.container.InputContainer, *, is_file: bool) -> SourceProperties:
    """Width, height, declared fps and (files only) the frame count: from the stream header, or estimated from the
    duration where the container does not store it (WebM, HLS)."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else None
    total: int | None = None
    if is_file:
        if stream.frames:
            total = stream.frames
        elif fps and container.duration:
            total = round(container.duration / av.time_base * fps)
    width, height = stream.codec_context.width or None, stream.codec_context.height or None
    return SourceProperties(width=width, height=height, total_frames=total, is_file=is_file, fps=fps)


def decoded_frames(container: av.container.InputContainer, max_pixels: int,
                   threads: int) -> Iterator[tuple[np.ndarray, float | None]]:  # fmt: skip
    """(BGR image, presentation time in seconds or None) for each frame of the first video stream, in order. The
    colour conversion runs on `threads` threads, as the decoder does: swscale's own default (one per core) gives the
    same pixels for about 1.5 times the CPU (1.4 against 0.9 ms a 640x480 frame, and 5 against 1 ms of wall time
    on busy cores)."""
    stream = container.streams.video[0]
    declared = _too_large(stream.codec_context.width, stream.codec_context.height, max_pixels)
    if declared:  # known from the header: refuse before decoding anything
        raise declared
    for frame in container.decode(stream):
        too_large = _too_large(frame.width, frame.height, max_pixels)
        if too_large:
            raise too_large
        image = np.ascontiguousarray(frame.reformat(format="bgr24", threads=threads).to_ndarray())
        yield image, (float(frame.time) if frame.time is not None else None)


def av_producer(parsed: ParsedReference, live: bool) -> Producer:
    """Decode a PyAV container; a live one reconnects after any failure or end, with exponential backoff, forever
    until closed. A file's failure is final."""

    def run(sink: FrameSink) -> None:
        settings = sink.options
        spec = open_spec(parsed, settings.video_source_properties)
        if parsed.kind == "camera" and not Path(parsed.target).exists():
            raise FileNotFoundError(f"the camera {parsed.target} does not exist")
        backoff = settings.reconnect_initial_s
        while True:
            try:
                with open_container(spec, open_timeout=settings.open_timeout_s, read_timeout=settings.open_timeout_s,
                                    threads=codec_threads(settings), live=live) as container:  # fmt: skip
                    sink.connected(properties_of(container, is_file=not live))
                    for image, pts in decoded_frames(container, settings.max_pixels, codec_threads(settings)):
                        sink.emit(image, pts)
                        backoff = settings.reconnect_initial_s
                if not live:
                    return
                error = "the stream ended"
            except (Stopped, FrameTooLarge):
                raise
            except Exception as exc:  # noqa: BLE001 - a live source retries whatever went wrong
                error = f"{type(exc).__name__}: {exc}".replace(spec.target, printable_reference(spec.target))
                if not live:
                    raise SourceFailed(error) from None
            sink.restarting(error)
            sink.sleep(backoff)
            backoff = min(backoff * 2, settings.reconnect_max_s)

    return run


def image_paths(parsed: ParsedReference) -> list[Path]:
    """A folder's images (by suffix), or a glob's files, sorted by name."""
    if parsed.kind == "folder":
        candidates = [p for p in Path(parsed.target).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES]
    else:
        candidates = [Path(p) for p in glob.glob(parsed.target)]
    return sorted(p for p in candidates if p.is_file())


def images_producer(parsed: ParsedReference) -> Producer:
    """Decode a folder or glob of images with OpenCV, in name order; unreadable files are skipped (last_error)."""

    def run(sink: FrameSink) -> None:
        paths = image_paths(parsed)
        if not paths:
            raise FileNotFoundError(f"no images in {parsed.target}")
        described = False
        for path in paths:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                sink.last_error = f"cannot read the image {path}"
                continue
            too_large = _too_large(image.shape[1], image.shape[0], sink.options.max_pixels)
            if too_large:
                raise too_large
            if not described:
                described = True
                sink.connected(SourceProperties(width=image.shape[1], height=image.shape[0], total_frames=len(paths),
                                                is_file=True, fps=None))  # fmt: skip
            sink.emit(np.ascontiguousarray(image))

    return run


def as_bgr(image: object, max_pixels: int) -> np.ndarray:
    """A pushed frame as an owned, contiguous BGR uint8 (H, W, 3) array (grey and BGRA are converted)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise TypeError("a pushed frame must be a uint8 numpy array of shape (H, W), (H, W, 3) or (H, W, 4)")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (1, 3, 4):
        raise TypeError(f"a pushed frame has {channels} channels; 1, 3 or 4 are accepted")
    too_large = _too_large(image.shape[1], image.shape[0], max_pixels)
    if too_large:
        raise too_large
    if channels == 3:
        return np.array(image, order="C", copy=True)  # owned: the caller may reuse its array for the next frame
    code = cv2.COLOR_GRAY2BGR if channels == 1 else cv2.COLOR_BGRA2BGR
    return np.ascontiguousarray(cv2.cvtColor(np.ascontiguousarray(image), code))


def pushed_producer(frames: Iterable[np.ndarray] | Callable[[], np.ndarray | None]) -> Producer:
    """Frames pushed in process: an iterable's items, or a callable's results until it returns None."""

    def run(sink: FrameSink) -> None:
        items: Iterator[np.ndarray | None] = _calls(frames) if callable(frames) else iter(frames)
        described = False
        for item in items:
            image = as_bgr(item, sink.options.max_pixels)
            if not described:
                described = True
                sink.connected(SourceProperties(width=image.shape[1], height=image.shape[0], total_frames=None,
                                                is_file=False, fps=None))  # fmt: skip
            sink.emit(image)

    return run


def _calls(function: Callable[[], np.ndarray | None]) -> Iterator[np.ndarray]:
    while (item := function()) is not None:
        yield item
