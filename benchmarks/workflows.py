"""Workflows: a detect -> crop -> classify definition against the same calls made one by one over HTTP, and the
engine's own CPU per request besides the model passes.

    python -m benchmarks.workflows [--seconds 4]     (also part of `make bench`)

1. Throughput at 4 clients: `/workflows/run` with the definition, against a client that posts the image to
   `/infer/object_detection`, cuts each box out itself and posts each crop to `/infer/classification`, one request
   per model call (what a user of the server wrote before workflows). Both from the same Python client (a chain of
   dependent calls is not something wrk can send), measured in A-B-B-A order on one server. Goal >= 1.5x.
2. Engine CPU: a 5-step definition (detect, filter, crop, classify the crops, count them) run in-process on one
   thread, the thread's CPU time minus what its model calls and input decoding took. Goal <= 2 ms per request.
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import orjson
from rich.console import Console

from benchmarks.target import Target
from visionserve.api.state import ServerState
from visionserve.config import Settings
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore
from visionserve.server_process import ServerProcess
from visionserve.workflows.limits import WorkflowLimits
from visionserve.workflows.runner import WorkflowRun, run_workflow

console = Console(width=130)
FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
IMAGE = FIXTURES / "images" / "detect_0.jpg"
CLIENTS = 4
DETECTOR, CLASSIFIER = "shapes-detect/1", "shapes-classify/1"


def _step(type_id: str, name: str, **properties: Any) -> dict[str, Any]:
    return {"type": f"roboflow_core/{type_id}", "name": name, **properties}


def definition(with_filter_and_count: bool) -> dict[str, Any]:
    """detect -> crop -> classify; with a class filter before the crop and a count of the crops after: 5 steps."""
    crop_of = "$steps.keep.predictions" if with_filter_and_count else "$steps.det.predictions"
    steps = [
        _step("roboflow_object_detection_model@v2", "det", images="$inputs.image", model_id=DETECTOR, confidence=0.3),
        _step("dynamic_crop@v1", "crop", images="$inputs.image", predictions=crop_of),
        _step("roboflow_classification_model@v2", "cls", images="$steps.crop.crops", model_id=CLASSIFIER),
    ]
    outputs = [{"type": "JsonField", "name": "detections", "selector": "$steps.det.predictions"},
               {"type": "JsonField", "name": "classes", "selector": "$steps.cls.predictions"}]  # fmt: skip
    if with_filter_and_count:
        confident = {"type": "StatementGroup", "operator": "and", "statements": [{
            "type": "BinaryStatement", "comparator": {"type": "(Number) >="},
            "left_operand": {"type": "DynamicOperand", "operand_name": "_",
                             "operations": [{"type": "ExtractDetectionProperty", "property_name": "confidence"}]},
            "right_operand": {"type": "StaticOperand", "value": 0.3}}]}  # fmt: skip
        steps.insert(1, _step("detections_filter@v1", "keep", predictions="$steps.det.predictions",
                              operations=[{"type": "DetectionsFilter", "filter_operation": confident}]))  # fmt: skip
        steps.append(_step("property_definition@v1", "count", data="$steps.keep.predictions",
                           operations=[{"type": "SequenceLength"}]))  # fmt: skip
        outputs.append({"type": "JsonField", "name": "count", "selector": "$steps.count.output"})
    return {"version": "1.0", "inputs": [{"type": "WorkflowImage", "name": "image"}], "steps": steps,
            "outputs": outputs}  # fmt: skip


def prepare_store(home: Path) -> None:
    store = ModelStore(home / "models")
    for model_id, file in ((DETECTOR, "shapes-detect.onnx"), (CLASSIFIER, "shapes-classify.onnx")):
        if store.find(model_id) is None:
            import_model(store, FIXTURES / "models" / file, model_id, ManifestOverrides())


def _b64(data: bytes) -> dict[str, str]:
    return {"type": "base64", "value": base64.b64encode(data).decode()}


def one_by_one(http: httpx.Client, jpeg: bytes, pixels: np.ndarray) -> None:
    """What a client did before workflows: detect, cut each box out, classify each crop."""
    answer = http.post("/infer/object_detection", json={"model_id": DETECTOR, "image": _b64(jpeg), "confidence": 0.3})
    answer.raise_for_status()
    for box in answer.json()["predictions"]:
        x1, y1 = max(0, round(box["x"] - box["width"] / 2)), max(0, round(box["y"] - box["height"] / 2))
        x2, y2 = round(box["x"] + box["width"] / 2), round(box["y"] + box["height"] / 2)
        ok, crop = cv2.imencode(".png", pixels[y1:y2, x1:x2])
        assert ok
        http.post("/infer/classification", json={"model_id": CLASSIFIER, "image": _b64(crop.tobytes())}
                  ).raise_for_status()  # fmt: skip


def requests_per_second(url: str, call: Callable[[httpx.Client], None], seconds: float) -> float:
    """`CLIENTS` keep-alive clients, each calling `call` back to back for `seconds`."""
    done = [0] * CLIENTS
    ends = time.perf_counter() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.perf_counter() < ends:
                call(http)
                done[index] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def throughput_target(home: Path, seconds: float) -> Target:
    jpeg = IMAGE.read_bytes()
    pixels = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    body = orjson.dumps({"specification": definition(False), "inputs": {"image": _b64(jpeg)}})
    env = {"VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
    server = ServerProcess(home / "server-workflows.log", env=env).start()

    def run_definition(http: httpx.Client) -> None:
        http.post("/workflows/run", content=body, headers={"Content-Type": "application/json"}).raise_for_status()

    try:
        loads = {"workflow": run_definition, "one by one": lambda http: one_by_one(http, jpeg, pixels)}
        for call in loads.values():
            requests_per_second(server.url, call, 1.0)  # warm-up: models loaded, pools filled
        rates: dict[str, list[float]] = {name: [] for name in loads}
        for name in ("workflow", "one by one", "one by one", "workflow"):
            rates[name].append(requests_per_second(server.url, loads[name], seconds / 2))
    finally:
        server.stop()
    workflow, separate = (sum(rates[name]) / 2 for name in loads)
    return Target(f"workflow detect->crop->classify vs the same calls one by one, {CLIENTS} clients (Python client)",
                  f"{workflow:.1f} vs {separate:.1f} images/s", workflow / separate, ">= 1.50",
                  workflow / separate >= 1.5)  # fmt: skip


def engine_cpu_target(home: Path, runs: int = 200) -> Target:
    """The calling thread's CPU per request besides its model calls and input decoding (sequential engine)."""
    settings = Settings(home=home, weights_api="")
    state = ServerState.build(settings)
    service = state.service
    excluded = [0.0]

    def excluding(function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                excluded[0] += time.thread_time() - started

        return timed

    service.run = excluding(service.run)  # type: ignore[method-assign]
    service.images.load = excluding(service.images.load)  # type: ignore[method-assign]
    spec, limits = definition(True), WorkflowLimits.of(settings)
    inputs = {"image": _b64(IMAGE.read_bytes())}
    try:
        for _ in range(10):
            run_workflow(service, WorkflowRun(spec, inputs, "warm-up"), limits)
        excluded[0] = 0.0
        started = time.thread_time()
        for index in range(runs):
            answer = run_workflow(service, WorkflowRun(spec, inputs, f"run-{index}"), limits)
        engine_ms = 1000 * (time.thread_time() - started - excluded[0]) / runs
    finally:
        state.close()
    crops = answer["outputs"][0]["count"]
    return Target(f"workflow engine CPU per request besides model passes (5 steps, {crops} crops)",
                  f"{engine_ms:.2f} ms", engine_ms / 2.0, "<= 2 ms", engine_ms <= 2.0)  # fmt: skip


def workflow_targets(home: Path, seconds: float) -> list[Target]:
    prepare_store(home)
    return [throughput_target(home, seconds), engine_cpu_target(home)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each throughput measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for target in workflow_targets(Path(scratch), args.seconds):
            console.print(f"{target.name}: {target.measured}, ratio {target.ratio:.2f} (goal {target.goal}) "
                          f"{'PASS' if target.passed else 'MISS'}")  # fmt: skip


if __name__ == "__main__":
    main()
