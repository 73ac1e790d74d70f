"""Prometheus metrics (prometheus-client), one registry per application, served on `GET /metrics`.

Model labels only ever name models that loaded, so callers cannot grow the series without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from visionserve.observe import RequestStats, stage_cpu_seconds
from visionserve.runtime.batching import merged_totals
from visionserve.runtime.cores import CoreBudget

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class CpuCollector(Collector):
    """Where the process's CPU goes (each stage's threads, and the event loop's HTTP and JSON work), beside the
    standard `process_cpu_seconds_total`, and how many forward passes held every core or one slot."""

    def __init__(self, cores: CoreBudget) -> None:
        self.cores = cores
        self.event_loop_clock: int | None = None

    def watch_event_loop(self) -> None:
        """Called on the event loop's thread once it runs."""
        if hasattr(time, "pthread_getcpuclockid"):  # not on Windows
            self.event_loop_clock = time.pthread_getcpuclockid(threading.get_ident())

    def collect(self) -> Iterator[CounterMetricFamily]:
        cpu = CounterMetricFamily(
            "visionserve_cpu_seconds", "CPU seconds by part of the work: a stage's own thread time (parse, decode, "
            "preprocess, inference, postprocess, respond), or the event loop's (HTTP).", labels=["part"],
        )  # fmt: skip
        for stage, seconds in sorted(stage_cpu_seconds().items()):
            cpu.add_metric([stage], seconds)
        if self.event_loop_clock is not None:
            cpu.add_metric(["event_loop"], time.clock_gettime(self.event_loop_clock))
        yield cpu
        passes = CounterMetricFamily(
            "visionserve_forward_passes", "Forward passes, by the cores they held: all (a lone request) or one slot.",
            labels=["cores"],
        )  # fmt: skip
        passes.add_metric(["all"], self.cores.wide_passes)
        passes.add_metric(["slot"], self.cores.narrow_passes)
        yield passes
        merged = merged_totals()
        batched = CounterMetricFamily(
            "visionserve_merged_passes", "Forward passes that carried several requests (dynamic batching).")
        batched.add_metric([], merged["passes"])
        yield batched
        carried = CounterMetricFamily(
            "visionserve_merged_requests", "Requests whose forward pass was merged with others' (dynamic batching).")
        carried.add_metric([], merged["requests"])
        yield carried


class Metrics:
    def __init__(self, cores: CoreBudget | None = None) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, resident memory, open files
        self.cpu = CpuCollector(cores or CoreBudget(1))
        self.registry.register(self.cpu)
        labels = ["route", "method", "model", "status"]
        self.requests = Counter(
            "visionserve_requests", "HTTP requests served.", labels, registry=self.registry
        )
        self.latency = Histogram(
            "visionserve_request_duration_seconds", "HTTP request latency.", labels,
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.stages = Histogram(
            "visionserve_stage_duration_seconds", "Time per request in each stage (decode, preprocess, inference, "
            "postprocess).", ["stage", "model"], buckets=STAGE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.images = Counter("visionserve_images", "Images inferred.", ["model"], registry=self.registry)
        self.model_loads = Counter(
            "visionserve_model_loads", "Model loads, by outcome.", ["model", "outcome"], registry=self.registry
        )
        self.model_load_seconds = Histogram(
            "visionserve_model_load_duration_seconds", "Time to load a model (download included).",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300), registry=self.registry,
        )  # fmt: skip
        self.models_loaded = Gauge("visionserve_models_loaded", "Models in memory.", registry=self.registry)
        self.in_flight = Gauge(
            "visionserve_inferences_in_flight", "Inference jobs accepted and not finished.", registry=self.registry
        )
        self.queued = Gauge(
            "visionserve_inferences_queued", "Inference jobs waiting for a worker thread.", registry=self.registry
        )

    def count_models_with(self, count: Callable[[], int]) -> None:
        self.models_loaded.set_function(count)

    def observe_request(self, route: str, method: str, status: int, seconds: float, stats: RequestStats) -> None:
        model = stats.model_id or ""
        labels = (route, method, model, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        if stats.model_id is not None:
            self.images.labels(model).inc(len(stats.image_sizes))
            for stage, stage_seconds in stats.seconds.items():
                self.stages.labels(stage, model).observe(stage_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
