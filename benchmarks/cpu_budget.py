"""Server CPU per request, by part of the work, from the server's own counters (`/metrics`): each stage's thread
CPU time, the event loop's, and the whole process's (`process_cpu_seconds_total`) for what no stage accounts for
(ONNX Runtime's own threads in a pass over several cores, the garbage collector, uvicorn's bookkeeping)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

HTTP_PARTS = ("event_loop", "parse", "respond")  # HTTP and JSON: the event loop, the body, the answer
STAGES = ("inference", "decode", "preprocess", "postprocess")


def read_counters(url: str) -> dict[str, float]:
    """CPU seconds so far by part, the process's total ("process"), and images inferred ("images")."""
    counters = {"images": 0.0}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "visionserve_cpu_seconds_total":
                counters[sample.labels["part"]] = sample.value
            elif sample.name == "process_cpu_seconds_total":
                counters["process"] = sample.value
            elif sample.name == "visionserve_images_total":
                counters["images"] += sample.value
    return counters


@dataclass(frozen=True)
class CpuBudget:
    """Server CPU milliseconds per image (one image per request in these runs)."""

    forward: float
    decode: float
    preprocess: float
    postprocess: float
    http: float
    other: float
    images: int

    @property
    def total(self) -> float:
        return self.forward + self.besides_forward

    @property
    def besides_forward(self) -> float:
        return self.decode + self.preprocess + self.postprocess + self.http + self.other

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float]) -> CpuBudget:
        images = int(after["images"] - before["images"])
        per = {part: 1000 * (after.get(part, 0.0) - before.get(part, 0.0)) / max(1, images) for part in after}
        http = sum(per.get(part, 0.0) for part in HTTP_PARTS)
        stages = sum(per.get(stage, 0.0) for stage in STAGES)
        return cls(
            forward=per.get("inference", 0.0), decode=per.get("decode", 0.0), preprocess=per.get("preprocess", 0.0),
            postprocess=per.get("postprocess", 0.0), http=http, other=per.get("process", 0.0) - stages - http,
            images=images,
        )  # fmt: skip
