"""Load generation and timing: repeat a call, drive a server with N keep-alive clients, summarise latencies.

Used by `visionserve benchmark` and the benchmarks in `benchmarks/`. `drive` uses wrk (a C load generator: on a
small machine a Python client takes CPU from the server it measures) when it is installed, else `http_load`.
"""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DRAIN_S = 0.3  # after a warm-up: wrk stops with requests in flight, and the server finishes them meanwhile
# wrk calls `done` once at the end: one line of JSON with what the benchmarks need (latencies in microseconds).
WRK_SCRIPT = r"""
local file = io.open(os.getenv("VISIONSERVE_WRK_BODY"), "rb")
wrk.body = file:read("*a")
file:close()
wrk.method = "POST"
for name, value in string.gmatch(os.getenv("VISIONSERVE_WRK_HEADERS"), "([^\n:]+): ([^\n]*)") do
  wrk.headers[name] = value
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p90_us": %d}\n',
    summary.requests - e.status, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90)))
end
"""


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


@dataclass(frozen=True)
class LoadResult:
    """What a load run measured, and which generator made the load."""

    requests: int  # answered with a 2xx
    wall_s: float
    errors: int  # failed connections and other answers
    p50_ms: float
    p90_ms: float
    generator: str  # "wrk" or "python"

    @property
    def per_second(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0


def load_generator() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def drive(
    url: str,
    path: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    warmup_s: float = 1.0,
) -> LoadResult:
    """`concurrency` keep-alive clients POST `body` back to back for `seconds`, after `warmup_s` of the same
    load that is not counted; errors are failed connections and non-2xx answers."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    if load_generator() == "python":
        http_load(url, path, body, concurrency, seconds=warmup_s, headers=headers)
        timing = http_load(url, path, body, concurrency, seconds=seconds, headers=headers)
        return LoadResult(len(timing.latencies), timing.wall_s, timing.errors, timing.percentile_ms(50),
                          timing.percentile_ms(90), "python")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        script, body_file = Path(scratch) / "post.lua", Path(scratch) / "body"
        script.write_text(WRK_SCRIPT)
        body_file.write_bytes(body)
        env = {"VISIONSERVE_WRK_BODY": str(body_file),
               "VISIONSERVE_WRK_HEADERS": "\n".join(f"{name}: {value}" for name, value in headers.items())}  # fmt: skip

        def wrk(duration: float) -> dict[str, int]:
            command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "120s", "-s", str(script),
                       url + path]  # fmt: skip
            output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
            return json.loads(output.strip().splitlines()[-1])

        if warmup_s > 0:
            wrk(warmup_s)
            time.sleep(DRAIN_S)
        summary = wrk(seconds)
    return LoadResult(summary["requests"], summary["duration_us"] / 1e6, summary["errors"], summary["p50_us"] / 1000,
                      summary["p90_us"] / 1000, "wrk")  # fmt: skip
