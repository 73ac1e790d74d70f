"""Object detection over HTTP against the raw forward pass, on the same cores, repeated in rounds (medians):

1. Throughput at the best client count vs the best raw configuration (>= 0.85 at 640x480, >= 0.75 at 1920x1080).
2. A lone request's p50 vs the raw p50 of one session over every core (<= +2 ms).
3. Server CPU per request by part (`benchmarks.cpu_budget`): all but the forward <= 3 ms, and the forward's
   in-server CPU <= 1.1x its CPU alone.
4. A list of 8 images in one request vs 8 single requests (>= 1.3x).

The models: nudenet's YOLOv8n run at 320 and at 640. The server runs with its default settings.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from rich.table import Table

from benchmarks.cpu_budget import CpuBudget, read_counters
from benchmarks.detect import load, request_body, test_photo
from benchmarks.target import Target, median_of
from visionserve.config import Settings
from visionserve.loadtest import LoadResult, drive, repeat
from visionserve.runtime.onnx_model import OnnxModel
from visionserve.runtime.threads import ThreadPlan
from visionserve.server_process import ServerProcess

DETECTORS = {"nudenet/1": 320, "nudenet-640/1": 640}  # model id → input side: nudenet's YOLOv8n at both sizes
CONCURRENCY = (1, 2, 4, 8)
PATH = "/infer/object_detection"
REFERENCE_RATIO = 40 / (1000 / 16)  # the reference server: 40 req/s on a 320 YOLOv8n whose forward takes 16 ms
GOALS = {"640x480": 0.85, "1920x1080": 0.75}


@dataclass(frozen=True)
class RawForward:
    """One way to run the raw session: `runs` passes side by side of `threads` threads each."""

    runs: int
    threads: int
    per_second: float  # every run busy
    p50_ms: float  # one pass at a time
    cpu_ms: float  # CPU of one pass at a time (the calling thread's: exact for a single-thread pass)

    @property
    def name(self) -> str:
        return f"{self.runs} run x {self.threads} thr"


def raw_forward(runner: OnnxModel, hw: tuple[int, int], seconds: float, threads: int) -> RawForward:
    tensor = np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)
    cpu_started = time.thread_time()
    alone = repeat(lambda: runner.run(tensor), seconds / 2)
    cpu_ms = 1000 * (time.thread_time() - cpu_started) / (len(alone.latencies) + 3)  # 3 warm-up passes
    count, stop = [0], time.perf_counter() + seconds / 2

    def loop() -> None:
        while time.perf_counter() < stop:
            runner.run(tensor)
            count[0] += 1

    workers = [threading.Thread(target=loop) for _ in range(runner.concurrent_runs)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    rate = count[0] / (time.perf_counter() - started)
    return RawForward(runner.concurrent_runs, threads, rate, alone.percentile_ms(50), cpu_ms)


def raw_configurations(
    home: Path, model_id: str, plan: ThreadPlan, seconds: float, hw: tuple[int, int] | None = None
) -> list[RawForward]:
    """The server's two ways to run a model, as plain sessions: its passes side by side under load, and one pass
    over every core (a lone request's); on inputs of the model's size unless `hw` says (dynamic-size models)."""
    results = []
    for threads, runs in ((plan.run_threads, plan.concurrent_runs), (plan.lone_threads, 1)):
        settings = Settings(intra_op_threads=threads, concurrent_runs=runs, lone_request_threads=threads)
        model = load(home, model_id, settings)
        results.append(raw_forward(model.predictor.runner, hw or model.predictor.input_hw, seconds, threads))
        del model
    return results


@dataclass(frozen=True)
class LoneLatency:
    http_p50_ms: float  # one client, the median of the blocks' p50s
    raw_p50_ms: float  # one raw pass over every core, the same


def lone_latency(home: Path, model_id: str, plan: ThreadPlan, url: str, body: bytes, blocks: int = 3) -> LoneLatency:
    """A lone request's p50 against one raw pass over every core, in alternating one-second blocks: on a shared
    VM a pass over two vCPUs drifts by up to 1.5x from one minute to the next, and alternating lets the drift
    weigh on both alike."""
    settings = Settings(intra_op_threads=plan.lone_threads, concurrent_runs=1, lone_request_threads=plan.lone_threads)
    model = load(home, model_id, settings)
    tensor = np.random.default_rng(0).random((1, 3, *model.predictor.input_hw), dtype=np.float32)
    drive(url, PATH, body, 1, 1)  # warm-up, and the server's quiet time after the previous load
    http, raw = [], []
    for _ in range(blocks):
        raw.append(repeat(lambda: model.predictor.runner.run(tensor), 1.0).percentile_ms(50))
        http.append(drive(url, PATH, body, 1, 1, warmup_s=0).p50_ms)
    return LoneLatency(statistics.median(http), statistics.median(raw))


@dataclass(frozen=True)
class HttpRun:
    concurrency: int
    load: LoadResult
    budget: CpuBudget


def http_runs(url: str, body: bytes, seconds: float) -> list[HttpRun]:
    """One run per client count, the model already loaded (see `measure_round`)."""
    runs = []
    for concurrency in CONCURRENCY:
        before = read_counters(url)
        result = drive(url, PATH, body, concurrency, seconds)
        assert result.errors == 0, f"{result.errors} failed requests at {concurrency} clients"
        runs.append(HttpRun(concurrency, result, CpuBudget.between(before, read_counters(url))))
    return runs


@dataclass
class Round:
    raw: dict[str, list[RawForward]]  # model id → configurations
    lone: dict[str, LoneLatency]  # model id → at 640x480
    http: dict[tuple[str, str], list[HttpRun]]  # (model id, photo size) → by concurrency
    batch_gain: float  # images/s of 8-image requests vs single requests, one client

    def best_raw(self, model_id: str) -> RawForward:
        return max(self.raw[model_id], key=lambda raw: raw.per_second)

    def best_http(self, model_id: str, size: str) -> HttpRun:
        return max(self.http[model_id, size], key=lambda run: run.load.per_second)



def measure_round(home: Path, plan: ThreadPlan, seconds: float) -> Round:
    photos = {size: test_photo(*map(int, size.split("x"))) for size in GOALS}
    raw: dict[str, list[RawForward]] = {}
    lone: dict[str, LoneLatency] = {}
    http: dict[tuple[str, str], list[HttpRun]] = {}
    env = {"VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
    server = ServerProcess(home / "server.log", env=env).start()
    try:
        for model_id in DETECTORS:  # raw, then HTTP, model by model: the two close in time on a drifting machine
            raw[model_id] = raw_configurations(home, model_id, plan, seconds)
            # Loaded before any timed run: a load inside one (or inside wrk's warm-up, which may end mid-request)
            # would count as load, and a request still loading when the next run starts keeps it from being alone.
            httpx.post(server.url + "/model/add", json={"model_id": model_id}, timeout=300).raise_for_status()
            lone[model_id] = lone_latency(home, model_id, plan, server.url, request_body(model_id, [photos["640x480"]]))
            for size, jpeg in photos.items():
                http[model_id, size] = http_runs(server.url, request_body(model_id, [jpeg]), seconds)
        batch = drive(server.url, PATH, request_body("nudenet/1", [photos["640x480"]] * 8), 1, seconds)
    finally:
        server.stop()
    single = http["nudenet/1", "640x480"][0].load.per_second
    return Round(raw, lone, http, batch.per_second * 8 / single)


def _median_target(
    name: str, rounds: list[Round], value: Callable[[Round], float], unit: str, goal: str, passes: Callable[[float], bool]
) -> Target:
    middle, runs = median_of([value(one) for one in rounds])
    return Target(name, f"{runs}{unit}", middle, goal, passes(middle))


def detection_targets(rounds: list[Round]) -> list[Target]:
    targets = []
    for model_id, side in DETECTORS.items():
        for size, goal in GOALS.items():
            targets.append(_median_target(
                f"detect {side}, {size}: HTTP / best raw throughput", rounds,
                lambda r, m=model_id, s=size: r.best_http(m, s).load.per_second / r.best_raw(m).per_second,
                "", f">= {goal:.2f}", lambda ratio, g=goal: ratio >= g,
            ))  # fmt: skip
        targets.append(_median_target(
            f"detect {side}, 640x480: p50 at 1 client - raw p50 over all cores (alternating)", rounds,
            lambda r, m=model_id: r.lone[m].http_p50_ms - r.lone[m].raw_p50_ms,
            " ms", "<= +2 ms", lambda extra: extra <= 2.0,
        ))  # fmt: skip
        targets.append(_median_target(
            f"detect {side}, 640x480: server CPU besides the forward, per request", rounds,
            lambda r, m=model_id: r.best_http(m, "640x480").budget.besides_forward, " ms", "<= 3 ms",
            lambda ms: ms <= 3.0,
        ))  # fmt: skip
        targets.append(_median_target(
            f"detect {side}, 640x480: forward CPU in the server / alone", rounds,
            lambda r, m=model_id: r.best_http(m, "640x480").budget.forward / _narrow_raw(r, m).cpu_ms, "",
            "<= 1.10", lambda ratio: ratio <= 1.1,
        ))  # fmt: skip
    targets.append(_median_target(
        "vs the reference server's ratio (320, 640x480)", rounds,
        lambda r: r.best_http("nudenet/1", "640x480").load.per_second / r.best_raw("nudenet/1").per_second
        / REFERENCE_RATIO, "x", "> 1.00", lambda ratio: ratio > 1.0,
    ))  # fmt: skip
    targets.append(_median_target("8 images in one request vs 8 single requests", rounds, lambda r: r.batch_gain, "x",
                                  ">= 1.30", lambda gain: gain >= 1.3))  # fmt: skip
    return targets


def _narrow_raw(one: Round, model_id: str) -> RawForward:
    """The single-thread configuration (the server's passes under load): its CPU per pass alone."""
    return min(one.raw[model_id], key=lambda raw: raw.threads)


def detail_tables(last: Round) -> list[Table]:
    """The last round in full: raw configurations, HTTP by client count, and the CPU budget at the best count."""
    raw = Table("model", "raw configuration", "passes/s", "p50 ms alone", "CPU ms/pass alone",
                title="raw ONNX Runtime forward (random input)")  # fmt: skip
    for model_id, side in DETECTORS.items():
        for config in last.raw[model_id]:
            raw.add_row(str(side), config.name, f"{config.per_second:.1f}", f"{config.p50_ms:.2f}",
                        f"{config.cpu_ms:.2f}")  # fmt: skip
        lone = last.lone[model_id]
        raw.add_row(str(side), "1 run x all, alternating with HTTP", "", f"{lone.raw_p50_ms:.2f} (HTTP, 1 client: "
                    f"{lone.http_p50_ms:.2f})", "")  # fmt: skip
    http = Table("model", "photo", "clients", "req/s", "p50 ms", "p90 ms", "vs best raw/s",
                 title=f"HTTP /infer/object_detection, default server, load from {_generator(last)}")  # fmt: skip
    budget = Table("model", "photo", "clients", "forward", "decode", "preprocess", "postprocess", "HTTP+JSON", "other",
                   "besides forward", title="server CPU ms per request (process counters), at the best client count")
    for (model_id, size), runs in last.http.items():
        best_raw = last.best_raw(model_id).per_second
        for run in runs:
            http.add_row(str(DETECTORS[model_id]), size, str(run.concurrency), f"{run.load.per_second:.1f}",
                         f"{run.load.p50_ms:.2f}", f"{run.load.p90_ms:.2f}", f"{run.load.per_second / best_raw:.2f}")
        b = last.best_http(model_id, size)
        cpu = b.budget
        budget.add_row(str(DETECTORS[model_id]), size, str(b.concurrency), *(f"{value:.2f}" for value in (
            cpu.forward, cpu.decode, cpu.preprocess, cpu.postprocess, cpu.http, cpu.other, cpu.besides_forward)))
    return [raw, http, budget]


def _generator(one: Round) -> str:
    return next(iter(one.http.values()))[0].load.generator

