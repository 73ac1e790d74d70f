"""Soak: many mixed requests against one server on loopback, then what broke and how memory moved.

    python -m benchmarks.soak [--requests 10000] [--concurrency 8]

The mix: valid single images and batches on both routes, invalid bodies (bad base64, unknown models, broken JSON,
wrong types), bodies over the size limit, and clients that hang up mid-request or before reading the answer.
Goals: no valid request fails, no 5xx, resident memory grows less than 5% from after warm-up to the end.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import random
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import orjson
import skimage.data
from rich.console import Console
from rich.table import Table

from visionserve.server_process import ServerProcess

console = Console(width=120)
BODY_LIMIT = 2 * 1024 * 1024


def _jpeg(name: str, size: tuple[int, int] | None = None) -> bytes:
    rgb = getattr(skimage.data, name)()
    if size:
        rgb = cv2.resize(rgb, size)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def request_mix() -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    """(kind, method, path, body, headers); kind is valid, invalid, oversized or disconnect."""
    astronaut, coffee, big = _jpeg("astronaut"), _jpeg("coffee"), _jpeg("retina", (3000, 3000))
    image = {"type": "base64", "value": _b64(astronaut)}
    json_headers = {"Content-Type": "application/json"}
    detect = "/infer/object_detection"
    oversized = orjson.dumps({"model_id": "nudenet/1", "image": [{"type": "base64", "value": _b64(big)}] * 2})
    assert len(oversized) > BODY_LIMIT
    return [
        ("valid", "POST", detect, orjson.dumps({"model_id": "nudenet/1", "image": image}), json_headers),
        ("valid", "POST", detect, orjson.dumps({"model_id": "nudenet/1", "image": [image, {"type": "base64", "value": _b64(coffee)}]}), json_headers),
        ("valid", "POST", "/nudenet/1?confidence=30", _b64(astronaut).encode(), {"Content-Type": "application/x-www-form-urlencoded"}),
        ("valid", "POST", "/nudenet/1", coffee, {"Content-Type": "image/jpeg"}),
        ("valid", "GET", "/model/registry", b"", {}),
        ("invalid", "POST", detect, orjson.dumps({"model_id": "nudenet/1", "image": {"type": "base64", "value": "@@@"}}), json_headers),
        ("invalid", "POST", detect, orjson.dumps({"model_id": "missing/1", "image": image}), json_headers),
        ("invalid", "POST", detect, b"{not json", json_headers),
        ("invalid", "POST", detect, orjson.dumps({"model_id": 5, "image": "x"}), json_headers),
        ("invalid", "POST", "/nudenet/1", b"\x00\x01\x02" * 100, {"Content-Type": "application/octet-stream"}),
        ("invalid", "POST", detect, orjson.dumps({"model_id": "nudenet/1", "image": {"type": "numpy", "value": "AAAA"}}), json_headers),
        ("oversized", "POST", detect, oversized, json_headers),
        ("disconnect", "POST", detect, orjson.dumps({"model_id": "nudenet/1", "image": image}), json_headers),
    ]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _disconnect(port: int, method: str, path: str, body: bytes, headers: dict[str, str], rng: random.Random) -> None:
    """Send part of the request, or all of it, then hang up without reading the answer."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body[: rng.choice([0, len(body) // 2, len(body)])])


def run_clients(port: int, mix: list, total: int, concurrency: int, seed: int) -> Counter[tuple[str, int]]:
    """`concurrency` clients send `total` requests drawn from the mix; outcomes by (kind, status)."""
    weights = [30, 15, 10, 10, 5, 5, 5, 3, 3, 3, 3, 4, 4]
    outcomes: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    tickets = iter(range(total))

    def client(worker: int) -> None:
        rng = random.Random(seed * 1000 + worker)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                if next(tickets, None) is None:
                    return
            kind, method, path, body, headers = rng.choices(mix, weights)[0]
            if kind == "disconnect":
                _disconnect(port, method, path, body, headers, rng)
                status = 0
            else:
                try:
                    connection.request(method, path, body, headers)
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                    if response.getheader("connection", "").lower() == "close":
                        connection.close()
                except (OSError, http.client.HTTPException):
                    connection.close()
                    status = -1
            with lock:
                outcomes[(kind, status)] += 1

    threads = [threading.Thread(target=client, args=(index,)) for index in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def soak(total: int, concurrency: int, warmup: int, seed: int = 0) -> None:
    mix = request_mix()
    with tempfile.TemporaryDirectory() as home:
        env = {"VISIONSERVE_HOME": home, "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning",
               "VISIONSERVE_MAX_BODY_BYTES": str(BODY_LIMIT), "VISIONSERVE_PRELOAD_MODELS": "nudenet/1"}
        server = ServerProcess(Path(home) / "server.log", env=env).start()
        pid = server.process.pid  # type: ignore[union-attr]
        try:
            run_clients(server.port, mix, warmup, concurrency, seed + 1)  # every path, buffer and pool warmed
            time.sleep(1.0)
            rss_start = rss_kib(pid)
            started = time.perf_counter()
            outcomes = run_clients(server.port, mix, total, concurrency, seed)
            elapsed = time.perf_counter() - started
            time.sleep(1.0)  # let abandoned work drain
            rss_end = rss_kib(pid)
            still_ok = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            still_ok.request(*mix[0][1:3], mix[0][3], mix[0][4])
            healthy = still_ok.getresponse().status == 200
        finally:
            server.stop()
    report(outcomes, total, elapsed, rss_start, rss_end, healthy)


def report(outcomes: Counter, total: int, elapsed: float, rss_start: int, rss_end: int, healthy: bool) -> None:
    table = Table("kind", "status", "count", title=f"soak: {total} requests in {elapsed:.0f} s")
    for (kind, status), count in sorted(outcomes.items()):
        table.add_row(kind, {0: "hung up", -1: "connection error"}.get(status, str(status)), str(count))
    console.print(table)
    failed_valid = sum(count for (kind, status), count in outcomes.items() if kind == "valid" and status != 200)
    server_errors = sum(count for (_, status), count in outcomes.items() if status >= 500)
    growth = 100 * (rss_end - rss_start) / rss_start
    summary = Table("measure", "value", "goal", "result", title="soak summary")
    summary.add_row("failed valid requests", str(failed_valid), "0", "PASS" if failed_valid == 0 else "MISS")
    summary.add_row("5xx responses", str(server_errors), "0", "PASS" if server_errors == 0 else "MISS")
    summary.add_row("RSS after warm-up / at the end", f"{rss_start / 1024:.1f} / {rss_end / 1024:.1f} MiB",
                    "growth < 5%", f"{growth:+.1f}% " + ("PASS" if growth < 5 else "MISS"))
    summary.add_row("serves after the soak", str(healthy), "True", "PASS" if healthy else "MISS")
    console.print(summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1000, help="mixed requests sent before memory is measured")
    args = parser.parse_args()
    soak(args.requests, args.concurrency, args.warmup)


if __name__ == "__main__":
    main()
