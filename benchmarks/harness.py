"""Timing helpers shared by the benchmarks: repeat a call, drive a server with N clients, summarise."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


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


def http_load(url: str, path: str, body: bytes, concurrency: int, seconds: float, warmup: int = 3) -> Timing:
    """`concurrency` keep-alive clients POST `body` back to back for `seconds`; plain http.client keeps the
    load generator's own CPU cost low on a small machine."""
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client() -> None:
        nonlocal errors
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        for _ in range(warmup):
            connection.request("POST", path, body, headers)
            connection.getresponse().read()
        start_gate.wait()
        mine: list[float] = []
        failed = 0
        while time.perf_counter() < stop_at[0]:
            begin = time.perf_counter()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
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
    stop_at[0] = time.perf_counter() + seconds + 3600  # provisional, fixed once everyone is warm
    start_gate.wait()
    started = time.perf_counter()
    stop_at[0] = started + seconds
    for thread in threads:
        thread.join()
    return Timing(latencies, time.perf_counter() - started, errors)
