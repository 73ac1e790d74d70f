"""Local HTTP servers for stream tests: an MJPEG camera (multipart/x-mixed-replace) and a static folder (HLS)."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2

from tests.streams_support.video_maker import numbered_frame


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    """Numbered JPEG frames at `fps`, `frames` of them (then the connection closes), as an IP camera sends them."""

    fps: float = 30.0
    frames: int = 10_000

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=camframe")
        self.end_headers()
        start = time.monotonic()
        for number in range(self.frames):
            delay = start + number / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            jpeg = cv2.imencode(".jpg", numbered_frame(number % 256), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            head = f"--camframe\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
            try:
                self.wfile.write(head + jpeg + b"\r\n")
                self.wfile.flush()
            except OSError:
                return


@contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler] | functools.partial) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def mjpeg_server(fps: float = 30.0, frames: int = 10_000) -> Iterator[str]:
    """The URL of a local MJPEG stream."""
    handler = type("Mjpeg", (_MjpegHandler,), {"fps": fps, "frames": frames})
    with _serving(handler) as port:
        yield f"http://127.0.0.1:{port}/video.mjpg"


@contextmanager
def folder_server(folder: Path) -> Iterator[str]:
    """The base URL of a local server for a folder's files."""
    with _serving(functools.partial(_Quiet, directory=str(folder))) as port:
        yield f"http://127.0.0.1:{port}"
