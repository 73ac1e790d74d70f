"""A Roboflow-compatible weights API on loopback, with the failure modes a real one has: bad keys, unknown models,
5xx hiccups, downloads cut half-way or stalled, wrong checksums, slow links, weights on a host that is down, and
broken packages (missing files, environment.json that is not JSON). It counts every call."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import send_json

GOOD_KEY = "good-key"
FORBIDDEN_KEY = "forbidden-key"


@dataclass
class CatalogModel:
    weights: bytes
    environment: dict[str, Any]
    classes: list[str] | None
    task: str = "object-detection"
    model_type: str = "yolov8n"
    needs_key: bool = False
    describe_failures: int = 0  # first N descriptions answer 500
    cut_downloads: int = 0  # first N downloads stop half-way
    slow_s: float = 0.0  # pause before sending the weights
    describe_delay_s: float = 0.0  # pause before answering the description
    wrong_md5: bool = False
    colors: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0  # pause after sending half of the weights, then send the rest
    weights_base: str | None = None  # where the weights are, if not on this API (e.g. a closed port)
    missing: tuple[str, ...] = ()  # package files that answer 404
    raw_environment: bytes | None = None  # environment.json sent as these bytes
    keypoints_metadata: Any = None  # keypoint models: sent as `keypoints_metadata` when set


def environment(classes: list[str], resize_format: str = "Fit (grey edges) in", size: int = 320, **steps: Any) -> dict:
    preprocessing = {"resize": {"enabled": True, "width": size, "height": size, "format": resize_format}, **steps}
    return {
        "PREPROCESSING": json.dumps(preprocessing),
        "CLASS_MAP": {str(index): name for index, name in enumerate(classes)},
        "COLORS": {name: "#FF0000" for name in classes},
    }


class FakeWeightsApi:
    def __init__(self, catalog: dict[str, CatalogModel]) -> None:
        self.catalog = catalog
        self.calls: Counter[str] = Counter()  # "describe <id>", "download <id>", "environment <id>"
        self.keys_seen: list[str | None] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                api.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, what: str) -> int:
        with self.lock:
            return self.calls[what]

    def _record(self, what: str) -> int:
        with self.lock:
            self.calls[what] += 1
            return self.calls[what]

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        segments = [urllib.parse.unquote(s) for s in parts.path.strip("/").split("/")]
        if len(segments) == 3 and segments[0] == "ort":
            self._describe(request, f"{segments[1]}/{segments[2]}", query.get("api_key"))
        elif len(segments) == 4 and segments[0] == "files":
            self._file(request, f"{segments[1]}/{segments[2]}", segments[3])
        else:
            send_json(request, 404, {"error": "no such route"})

    def _describe(self, request: http.server.BaseHTTPRequestHandler, model_id: str, key: str | None) -> None:
        calls = self._record(f"describe {model_id}")
        with self.lock:
            self.keys_seen.append(key)
        model = self.catalog.get(model_id)
        if key == FORBIDDEN_KEY:
            return send_json(request, 403, {"error": "forbidden"})
        if model is not None and model.needs_key and key != GOOD_KEY:
            return send_json(request, 401, {"error": "unauthorized"})
        if model is None:
            return send_json(request, 404, {"error": "not found"})
        time.sleep(model.describe_delay_s)
        if calls <= model.describe_failures:
            return send_json(request, 500, {"error": "hiccup"})
        files = f"{self.url}/files/{model_id}"
        weights = f"{model.weights_base or self.url}/files/{model_id}/weights.onnx"
        ort = {"type": model.task, "modelType": model.model_type, "model": weights,
               "environment": f"{files}/environment.json", "colors": model.colors}
        if model.classes is not None:
            ort["classes"] = model.classes
        if model.keypoints_metadata is not None:
            ort["keypoints_metadata"] = model.keypoints_metadata
        send_json(request, 200, {"ort": ort})

    def _file(self, request: http.server.BaseHTTPRequestHandler, model_id: str, name: str) -> None:
        model = self.catalog[model_id]
        if name in model.missing:
            return send_json(request, 404, {"error": "no such file"})
        if name == "environment.json":
            self._record(f"environment {model_id}")
            if model.raw_environment is not None:
                return send_bytes(request, model.raw_environment)
            return send_json(request, 200, model.environment)
        downloads = self._record(f"download {model_id}")
        time.sleep(model.slow_s)
        data, start = model.weights, 0
        ranged = request.headers.get("Range", "")
        if ranged.startswith("bytes="):
            start = int(ranged[len("bytes=") :].split("-")[0])
        md5 = hashlib.md5(b"tampered" if model.wrong_md5 else data).digest()
        request.send_response(206 if start else 200)
        request.send_header("Content-Length", str(len(data) - start))
        request.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={base64.b64encode(md5).decode()}")
        request.end_headers()
        body = data[start:]
        if model.stall_s:
            request.wfile.write(body[: len(body) // 2])
            request.wfile.flush()
            time.sleep(model.stall_s)
            body = body[len(body) // 2 :]
        if downloads <= model.cut_downloads:
            request.wfile.write(body[: len(body) // 2])  # then hang up, as a dropped link does
            request.wfile.flush()
            request.close_connection = True
            return
        request.wfile.write(body)


def send_bytes(request: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
    request.send_response(200)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)
