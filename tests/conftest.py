"""Shared test parts: real server processes on loopback, a local HTTP file server, real photos."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import skimage.data

from visionserve.server_process import ServerProcess


def send_json(handler: http.server.BaseHTTPRequestHandler, status: int, payload: object) -> None:
    """Answer a request of a local test HTTP server with a JSON body."""
    body = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


# Scores against another package's own numbers (torch, or answers recorded on another machine): float32 kernels of
# other CPUs or libraries sum in another order, which moved scores by up to 2.4e-5 in CI; a wrong pre- or
# post-processing step moves them by far more, and boxes are checked to the pixel beside.
SCORE_TOLERANCE = 1e-4

# The project's own Ultralytics models and test images (tools/make_fixtures.py); another folder made by the
# same script can stand in, e.g. to check a fresh run: VISIONSERVE_TEST_FIXTURES=/tmp/out make test.
FIXTURES = Path(os.environ.get("VISIONSERVE_TEST_FIXTURES", Path(__file__).parent / "fixtures"))
FIXTURE_MODELS = {  # model id in the test store → fixture file
    "shapes-detect/1": "shapes-detect.onnx",
    "shapes-detect-dynamic/1": "shapes-detect-dynamic.onnx",
    "shapes-detect-nms/1": "shapes-detect-nms.onnx",
    "shapes-detect-v5classic/1": "shapes-detect-v5classic.onnx",
    "shapes-detect-v5u/1": "shapes-detect-v5u.onnx",
    "shapes-detect-yolo11/1": "shapes-detect-yolo11.onnx",
    "shapes-segment/1": "shapes-segment.onnx",
    "shapes-pose/1": "shapes-pose.onnx",
    "shapes-obb/1": "shapes-obb.onnx",
    "shapes-classify/1": "shapes-classify.onnx",
}


class Server(ServerProcess):
    """A real server on a free loopback port, with its own home folder."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        super().__init__(
            log_path=home / "server.log",
            # Tests touch loopback only: no weights API unless a test starts its own.
            env={"VISIONSERVE_HOME": str(home), "VISIONSERVE_LOG_LEVEL": "warning", "VISIONSERVE_WEIGHTS_API": "",
                 **(env or {})},
        )
        self.home = home

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server with default settings for the whole session; only the tests' own loopback file server is
    allowed as an image URL destination."""
    running = Server(tmp_path_factory.mktemp("home"), {"VISIONSERVE_URL_ALLOW_HOSTS": "127.0.0.1"}).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """Start servers with custom settings; each is stopped at the end of the test."""
    started: list[Server] = []

    def start(env: dict[str, str] | None = None, home: Path | None = None) -> Server:
        running = Server(home or tmp_path / f"home{len(started)}", env).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


class FileHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, plus `/redirect?to=URL` (a 302) and `/slow/NAME?seconds=S` (the file, after a pause)."""

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts.path.startswith("/slow/"):
            time.sleep(float(query.get("seconds", ["5"])[0]))
            self.path = parts.path[len("/slow") :]
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up early (the server under test enforcing a size cap) are expected


@pytest.fixture(scope="session")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server for URL inputs: (base URL, the folder it serves)."""
    root = tmp_path_factory.mktemp("www")
    handler = functools.partial(FileHandler, directory=str(root))
    httpd = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


# --- real photos (scikit-image's bundled samples), as OpenCV gives them: BGR uint8 ---


def photo(name: str) -> np.ndarray:
    pixels = getattr(skimage.data, name)()
    if pixels.ndim == 2:
        return pixels
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)


def encode(pixels: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, data = cv2.imencode(ext, pixels, params)
    assert ok
    return data.tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_value(pixels: np.ndarray, ext: str = ".jpg") -> dict[str, str]:
    return {"type": "base64", "value": b64(encode(pixels, ext))}


def ground_truth() -> dict[str, dict]:
    return json.loads((FIXTURES / "images" / "ground_truth.json").read_text())


def fixture_models_home(home: Path) -> Path:
    """A home whose store holds every fixture model (added as `visionserve models add` does), plus the
    classifier again as a multi-label model."""
    from visionserve.models.inspect import ManifestOverrides, import_model
    from visionserve.models.store import ModelStore

    store = ModelStore(home / "models")
    for model_id, file_name in FIXTURE_MODELS.items():
        import_model(store, FIXTURES / "models" / file_name, model_id, ManifestOverrides())
    import_model(store, FIXTURES / "models" / "shapes-classify.onnx", "shapes-multilabel/1",
                 ManifestOverrides(multilabel=True))
    return home


@pytest.fixture(scope="session")
def fixture_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose store holds every fixture model (`fixture_models_home`)."""
    running = Server(fixture_models_home(tmp_path_factory.mktemp("fixture-home"))).start()
    yield running
    running.stop()
