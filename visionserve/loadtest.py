"""Load generation and timing: repeat a call, drive a server with N keep-alive clients, summarise latencies.

Used by `visionserve benchmark` and the benchmarks in `benchmarks/`."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


def answered_ok(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> bool:
    """Send one request on a keep-alive connection and read the whole answer: True for a 200. A broken connection
    is closed, so the next request reconnects."""
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        connection.close()
        return False


@dataclass(frozen=True)
class Timing:
    """Per-call latencies (seconds) and the throughput they add up to."""

    latencies: list[float]
    wall_s: float
    errors: int = 0

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")

    @property
    def mean_ms(self) -> float:
        return 1000 * statistics.fmean(self.latencies) if self.latencies else float("nan")


def repeat(call: Callable[[], object], seconds: float, warmup: int = 3) -> Timing:
    """Call repeatedly for about `seconds` after a few warm-up calls."""
    for _ in range(warmup):
        call()
    latencies: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(latencies) < 5:
        begin = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - begin)
    return Timing(latencies, time.perf_counter() - started)


def http_load(
    url: str,
    path: str,
    body: bytes,
    concurrency: int,
    seconds: float | None = None,
    requests: int | None = None,
    warmup: int = 3,
    headers: dict[str, str] | None = None,
) -> Timing:
    """`concurrency` keep-alive clients POST `body` back to back, for `seconds` or until `requests` have been
    sent. Plain http.client keeps the load generator's own CPU cost low on a small machine; a request that fails
    to connect or gets a non-200 answer counts as an error."""
    if (seconds is None) == (requests is None):
        raise ValueError("give either seconds or requests")
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", **(headers or {})}
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [float("inf")]
    tickets = iter(range(requests)) if requests is not None else None

    def next_request() -> bool:
        if tickets is None:
            return time.perf_counter() < stop_at[0]
        with lock:
            return next(tickets, None) is not None

    def client() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        mine: list[float] = []
        failed = 0
        try:
            for _ in range(warmup):
                connection.request("POST", path, body, headers)
                connection.getresponse().read()
        except OSError:
            pass  # counted below, when the measured requests fail too
        start_gate.wait()
        while next_request():
            begin = time.perf_counter()
            if answered_ok(connection, "POST", path, body, headers):
                mine.append(time.perf_counter() - begin)
            else:
                failed += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    started = time.perf_counter()
    if seconds is not None:
        stop_at[0] = started + seconds
    for thread in threads:
        thread.join()
    return Timing(latencies, time.perf_counter() - started, errors)
