"""Soak: many mixed requests against one server on loopback, then what broke and how memory moved.

    python -m benchmarks.soak [--requests 10000] [--concurrency 8]
    python -m benchmarks.soak --minutes 30       # as many requests as 30 minutes take, RSS sampled throughout

The mix: valid single images and batches on both routes, invalid bodies (bad base64, unknown models, broken JSON,
wrong types), bodies over the size limit, clients that hang up mid-request or before reading the answer, and the
attacks of issue 12: long lists of broken items, a Radiance .hdr file, a progressive JPEG of thousands of scans,
requests of far more decoded pixels than allowed, pickles of uninitialised arrays, huge headers, an image URL that
drips its headers, and connections that never finish their headers (held open beside the traffic).

Valid requests retry a 503 as the official client does (the server-wide pixel budget answers those).
Goals: no valid request fails, no 5xx but those 503s, resident memory grows less than 5% from after warm-up to the
end, the slowest /healthz (polled throughout) under 100 ms, peak RSS under 1.5 GB with the default limits. A timed
run also prints the RSS curve and whether it levels off: its second half may grow by at most a quarter of its first
half's growth, or 1%, whichever is more (an allocator settling grows early and stops; a leak grows at the same rate
to the end).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import itertools
import random
import socket
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import orjson
import skimage.data
from PIL import Image
from rich.console import Console
from rich.table import Table

from tests.dripping_server import DrippingServer
from visionserve.loadtest import answered_ok
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


def _scan_bomb(repeats: int = 3000) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last_scan = data.rindex(b"\xff\xda")
    return data[:last_scan] + data[last_scan:-2] * repeats + b"\xff\xd9"


def attack_mix(drip_url: str) -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    """The issue-12 attacks that travel as ordinary requests; each must get a clear 4xx (or a 503)."""
    json_headers = {"Content-Type": "application/json"}
    detect = "/infer/object_detection"

    def infer(image: object) -> bytes:
        return orjson.dumps({"model_id": "nudenet/1", "image": image})

    ok, hdr = cv2.imencode(".hdr", np.ones((3000, 3000, 3), np.float32))
    assert ok
    ok, plane = cv2.imencode(".png", np.zeros((6000, 6000, 3), np.uint8))  # 36 M pixels in ~100 KB
    assert ok
    uninitialised = b"\x80\x02cnumpy\nndarray\n(M\x00\x04M\x00\x04K\x03t\x85R."
    return [
        ("attack", "POST", detect, b'{"model_id": "nudenet/1", "image": [' + b",".join([b"{}"] * 100_000) + b"]}",
         json_headers),
        ("attack", "POST", detect, infer({"type": "base64", "value": _b64(hdr.tobytes())}), json_headers),
        ("attack", "POST", detect, infer({"type": "base64", "value": _b64(_scan_bomb())}), json_headers),
        ("attack", "POST", detect, infer([{"type": "base64", "value": _b64(plane.tobytes())}] * 10), json_headers),
        ("attack", "POST", detect, infer({"type": "numpy", "value": _b64(uninitialised)}), json_headers),
        ("attack", "POST", detect, infer({"type": "url", "value": drip_url}), json_headers),
        ("attack", "GET", "/healthz", b"", {"X-Big": "a" * (1024 * 1024)}),
    ]


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


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory now (VmRSS) or at its peak (VmHWM), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def _disconnect(port: int, method: str, path: str, body: bytes, headers: dict[str, str], rng: random.Random) -> None:
    """Send part of the request, or all of it, then hang up without reading the answer."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body[: rng.choice([0, len(body) // 2, len(body)])])


class HealthProbe:
    """Polls /healthz every 50 ms on its own connection and keeps the slowest answer."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.worst_s = 0.0
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.wait(0.05):
            started = time.perf_counter()
            ok = answered_ok(connection, "GET", "/healthz")
            self.latencies.append(time.perf_counter() - started)
            self.worst_s = max(self.worst_s, self.latencies[-1])
            self.failures += not ok

    def finish(self) -> None:
        self.stop.set()
        self.thread.join()


def hold_slowloris(port: int, count: int, stop: threading.Event) -> list[bool]:
    """`count` connections that send part of a header and then nothing; True for each the server cut."""
    cut = [False] * count
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=1)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    while not stop.is_set() and not all(cut):
        for index, sock in enumerate(sockets):
            if not cut[index]:
                try:
                    sock.recv(4096)  # the 408, or the close
                    cut[index] = True
                except TimeoutError:
                    pass
                except OSError:
                    cut[index] = True
    for sock in sockets:
        sock.close()
    return cut


class RssCurve:
    """The server's resident memory every `every_s` seconds, in a thread, from the start of the measured run."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.samples: list[tuple[float, int]] = []  # (seconds since start, KiB)
        self._pid, self._every_s = pid, every_s
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter() - self._started, rss_kib(self._pid)))
            if self._stop.wait(self._every_s):
                return

    def finish(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.perf_counter() - self._started, rss_kib(self._pid)))

    def halves_kib(self) -> tuple[int, int]:
        """Growth over the first half of the run and over the second."""
        middle = min(self.samples, key=lambda sample: abs(sample[0] - self.samples[-1][0] / 2))[1]
        return middle - self.samples[0][1], self.samples[-1][1] - middle


def run_clients(
    port: int, mix: list, total: int | None, concurrency: int, seed: int, until: float | None = None
) -> Counter[tuple[str, int]]:
    """`concurrency` clients send `total` requests drawn from the mix, or as many as fit before `until` (a
    perf_counter time); outcomes by (kind, status)."""
    weights = [30, 15, 10, 10, 5, 5, 5, 3, 3, 3, 3, 4, 4] + [1] * (len(mix) - 13)
    outcomes: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    tickets = iter(range(total)) if total is not None else itertools.count()

    def client(worker: int) -> None:
        rng = random.Random(seed * 1000 + worker)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while until is None or time.perf_counter() < until:
            with lock:
                if next(tickets, None) is None:
                    return
            kind, method, path, body, headers = rng.choices(mix, weights)[0]
            if kind == "disconnect":
                _disconnect(port, method, path, body, headers, rng)
                status = 0
            else:
                for attempt in range(6 if kind == "valid" else 1):  # valid ones retry 503s, as clients do
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
                    if status != 503:
                        break
                    time.sleep(0.2 * 2**attempt)
            with lock:
                outcomes[(kind, status)] += 1

    threads = [threading.Thread(target=client, args=(index,)) for index in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def soak(
    total: int | None, concurrency: int, warmup: int, seed: int = 0, slowloris: int = 100, minutes: float = 0.0
) -> None:
    dripper = DrippingServer(pause_s=0.5)
    mix = request_mix() + attack_mix(dripper.url)
    with tempfile.TemporaryDirectory() as home:
        env = {"VISIONSERVE_HOME": home, "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning",
               "VISIONSERVE_MAX_BODY_BYTES": str(BODY_LIMIT), "VISIONSERVE_PRELOAD_MODELS": "nudenet/1",
               "VISIONSERVE_URL_ALLOW_HOSTS": "127.0.0.1", "VISIONSERVE_ALLOW_NUMPY_INPUT": "1"}
        server = ServerProcess(Path(home) / "server.log", env=env).start()
        pid = server.process.pid  # type: ignore[union-attr]
        try:
            run_clients(server.port, mix, warmup, concurrency, seed + 1)  # every path, buffer and pool warmed
            time.sleep(1.0)
            rss_start = rss_kib(pid)
            probe = HealthProbe(server.port)
            stop_slowloris = threading.Event()
            slow_cut: list[bool] = []
            slow = threading.Thread(target=lambda: slow_cut.extend(hold_slowloris(server.port, slowloris, stop_slowloris)))
            slow.start()
            curve = RssCurve(pid, every_s=max(1.0, minutes * 60 / 30))
            started = time.perf_counter()
            until = started + minutes * 60 if minutes else None
            outcomes = run_clients(server.port, mix, None if until else total, concurrency, seed, until)
            elapsed = time.perf_counter() - started
            stop_slowloris.set()
            slow.join()
            probe.finish()
            time.sleep(1.0)  # let abandoned work drain
            curve.finish()
            rss_end = rss_kib(pid)
            rss_peak = rss_kib(pid, "VmHWM")
            still_ok = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            still_ok.request(*mix[0][1:3], mix[0][3], mix[0][4])
            healthy = still_ok.getresponse().status == 200
        finally:
            server.stop()
    report(outcomes, elapsed, rss_start, rss_end, healthy)
    report_attacks(probe, rss_peak, slow_cut)
    if minutes:
        report_curve(curve)


def report(outcomes: Counter, elapsed: float, rss_start: int, rss_end: int, healthy: bool) -> None:
    table = Table("kind", "status", "count", title=f"soak: {sum(outcomes.values())} requests in {elapsed:.0f} s")
    for (kind, status), count in sorted(outcomes.items()):
        table.add_row(kind, {0: "hung up", -1: "connection error"}.get(status, str(status)), str(count))
    console.print(table)
    failed_valid = sum(count for (kind, status), count in outcomes.items() if kind == "valid" and status != 200)
    server_errors = sum(count for (_, status), count in outcomes.items() if status >= 500 and status != 503)
    growth = 100 * (rss_end - rss_start) / rss_start
    summary = Table("measure", "value", "goal", "result", title="soak summary")
    summary.add_row("failed valid requests", str(failed_valid), "0", "PASS" if failed_valid == 0 else "MISS")
    summary.add_row("5xx responses", str(server_errors), "0", "PASS" if server_errors == 0 else "MISS")
    summary.add_row("RSS after warm-up / at the end", f"{rss_start / 1024:.1f} / {rss_end / 1024:.1f} MiB",
                    "growth < 5%", f"{growth:+.1f}% " + ("PASS" if growth < 5 else "MISS"))
    summary.add_row("serves after the soak", str(healthy), "True", "PASS" if healthy else "MISS")
    console.print(summary)


def report_attacks(probe: HealthProbe, rss_peak_kib: int, slow_cut: list[bool]) -> None:
    summary = Table("measure", "value", "goal", "result", title="while under attack")
    worst_ms = probe.worst_s * 1000
    p99_ms = float(np.percentile(probe.latencies, 99)) * 1000 if probe.latencies else 0.0
    summary.add_row("slowest /healthz", f"{worst_ms:.0f} ms ({probe.failures} failed)", "< 100 ms",
                    "PASS" if worst_ms < 100 and not probe.failures else "MISS")
    summary.add_row("/healthz p99", f"{p99_ms:.0f} ms of {len(probe.latencies)}", "", "")
    summary.add_row("peak RSS", f"{rss_peak_kib / 1024:.0f} MiB", "< 1536 MiB",
                    "PASS" if rss_peak_kib < 1536 * 1024 else "MISS")
    summary.add_row("slow-header connections cut", f"{sum(slow_cut)} of {len(slow_cut)}", "all",
                    "PASS" if all(slow_cut) else "MISS")
    console.print(summary)


def report_curve(curve: RssCurve) -> None:
    table = Table("minute", "RSS MiB", "since the start", title="resident memory through the run")
    first = curve.samples[0][1]
    for seconds, kib in curve.samples:
        table.add_row(f"{seconds / 60:.1f}", f"{kib / 1024:.1f}", f"{100 * (kib - first) / first:+.1f}%")
    console.print(table)
    early, late = curve.halves_kib()
    allowed = max(early / 4, first / 100)
    verdict = Table("measure", "value", "goal", "result", title="does it level off?")
    verdict.add_row("growth, first half / second half", f"{early / 1024:+.1f} / {late / 1024:+.1f} MiB",
                    f"second <= {allowed / 1024:.1f} MiB", "PASS" if late <= allowed else "MISS")
    console.print(verdict)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1000, help="mixed requests sent before memory is measured")
    parser.add_argument("--slowloris", type=int, default=100, help="connections that never finish their headers")
    parser.add_argument("--minutes", type=float, default=0.0, help="run this long instead of --requests requests")
    args = parser.parse_args()
    soak(args.requests, args.concurrency, args.warmup, slowloris=args.slowloris, minutes=args.minutes)


if __name__ == "__main__":
    main()
