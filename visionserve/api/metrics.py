"""Prometheus metrics (prometheus-client), one registry per application, served on `GET /metrics`.

Model labels only ever name models that loaded, so callers cannot grow the series without bound.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from visionserve.observe import RequestStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
