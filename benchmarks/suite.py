"""`make bench`: every performance target, measured side by side in one run on this machine, as ratios.

    python -m benchmarks.suite [--seconds 4] [--rounds 3] [--requests 10000]

Load comes from wrk when it is installed (`make bench` installs it where it can), else from a Python client; every
table says which. Machines are shared and noisy, so the detection targets are medians of `--rounds` rounds.

1. Detection (`benchmarks.detection`), nudenet's YOLOv8n at 320 and 640, one JPEG per request, default server:
   HTTP throughput at the best client count vs the best raw configuration (>= 0.85 at 640x480, >= 0.75 at
   1920x1080); a lone request's p50 vs one raw pass over every core (<= +2 ms); server CPU per request by part,
   from the server's own counters (all but the forward <= 3 ms, the forward <= 1.1x its CPU alone); a list of 8
   images vs 8 single requests (>= 1.3x); the reference server's published ratio (40 req/s over a 16 ms forward).
2. Instance segmentation at 640: mask decoding and polygons (fast mode) vs the forward pass (<= 15%).
3. RF-DETR Nano (when its fixtures are built): HTTP vs raw throughput (>= 0.85), and post-processing per image
   (sigmoid, top-k, masks for the segmenter) vs the forward pass.
4. Open Inference Protocol: images in as binary tensor data vs `/infer/object_detection` with base64 JSON, same
   model and photo, requests/s side by side (>= 1.00: no base64 to encode and decode).
5. Memory: a server with 8 models vs the sum of their sessions measured alone (<= 1.2x); RSS before and after
   10,000 requests (no growth).
6. Workflows (`benchmarks.workflows`): detect -> crop -> classify as one workflow vs the same calls one by one at 4
   clients (>= 1.5x), and the engine's own CPU per request for a 5-step definition (<= 2 ms).
7. Streams (`benchmarks.streams`): an in-process pipeline on a 640x480 H.264 file with 1, 2 and 4 sources vs the
   best raw forward (>= 0.85 each); a live source at 30 FPS, latency vs the forward pass (p50 <= +15 ms, p95 <=
   2x + 15 ms) at 320 and at 640 (where it drops frames); PyAV vs OpenCV decoding CPU per 1080p frame (<= 1.1x);
   RSS over 10,000 pushed frames (< 5% growth).
8. Execution providers (`benchmarks.providers`, a table after detection's): the CPU provider against OpenVINO, raw
   passes/s side by side on YOLOv8n 320 and 640 and RF-DETR Nano, alternating A-B-B-A; skipped with a note when
   this onnxruntime is not the OpenVINO build.
9. Dynamic batching (`benchmarks.batching`): a server merging passes across requests vs one that does not, at 1, 4
   and 16 clients; whether `auto` (off on the CPU provider) agrees with the run.
10. Model kinds of real size (`benchmarks.model_kinds`, models built by tools/make_bench_models.py): semantic
   segmentation (LR-ASPP MobileNetV3-Large, 21 classes, and its post-processing vs the forward), a ResNet-18
   classifier, a multi-label ResNet-18 and RF-DETR keypoints, HTTP vs raw forward (>= 0.90 each).
11. Ray Serve (`benchmarks.ray_bench`, as `make bench-ray`): the Ray deployment vs one process on the same cores,
   throughput (>= 0.80), and what Ray adds per request: CPU from /proc and p50 at one client (<= 3 ms each).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import httpx
import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from benchmarks.batching import batching_targets
from benchmarks.detect import load, request_body, test_photo
from benchmarks.detection import (
    CONCURRENCY,
    DETECTORS,
    PATH,
    detail_tables,
    detection_targets,
    measure_round,
    raw_configurations,
)
from benchmarks.model_kinds import kind_targets
from benchmarks.providers import provider_table
from benchmarks.ray_bench import ray_targets
from benchmarks.streams import stream_targets
from benchmarks.target import Target
from benchmarks.workflows import workflow_targets
from visionserve.api.state import settings_plan
from visionserve.config import Settings
from visionserve.images.decode import DecodedImage
from visionserve.loadtest import drive, http_load, load_generator, repeat
from visionserve.models.builtin import BuiltinModels
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore
from visionserve.runtime.threads import available_cores, cpu_model
from visionserve.server_process import ServerProcess
from visionserve.tasks.preprocess import build_input_batch

console = Console(width=130)
FIXTURE_MODELS = Path(__file__).parent.parent / "tests" / "fixtures" / "models"


def segmentation_target(home: Path, seconds: float, settings: Settings) -> Target:
    """Mask decoding (fast mode) against the forward pass, on the fixture segmenter run at 640."""
    model = load(home, "shapes-segment-640/1", settings)
    predictor = model.predictor
    tiles = [cv2.imread(str(path)) for path in sorted((FIXTURE_MODELS.parent / "images").glob("segment_*.jpg"))]
    mosaic = DecodedImage.full(cv2.resize(np.vstack([np.hstack([tiles[0], tiles[1]]), np.hstack([tiles[2], tiles[0]])]),
                                          (1280, 1280)))  # shapes at the scale the model was trained on
    options = {"confidence": 0.25, "mask_decode_mode": "fast"}
    tensor, (transform,) = build_input_batch([mosaic], predictor.spec)
    outputs = [output[0] for output in predictor.runner.run(tensor)]
    params = predictor.parse_options(options)
    detections = predictor.detect(outputs[0], transform, params.detection)
    forward = repeat(lambda: predictor.runner.run(tensor), seconds / 3).mean_ms
    with_masks = repeat(lambda: predictor.postprocess(outputs, transform, params), seconds / 3).mean_ms
    boxes_only = repeat(lambda: predictor.detect(outputs[0], transform, params.detection), seconds / 3).mean_ms
    masks = with_masks - boxes_only
    share = masks / forward
    return Target(f"segment 640, fast masks for {len(detections)} objects", f"{masks:.2f} ms vs forward {forward:.2f} ms",
                  share, "<= 0.15", share <= 0.15)


def rfdetr_targets(home: Path, seconds: float, settings: Settings) -> list[Target]:
    """RF-DETR Nano (built by the RF-DETR fixture step): HTTP throughput vs its raw forward with the default thread
    budget, and post-processing (sigmoid, top-k, masks) per image as a share of the forward pass."""
    folder = os.environ.get("VISIONSERVE_RFDETR_FIXTURES")
    if not folder:
        console.print("[yellow]RF-DETR not measured: VISIONSERVE_RFDETR_FIXTURES is not set (make bench sets it)[/yellow]")
        return []
    store = ModelStore(home / "models")
    names = ManifestOverrides(class_names=["circle", "square", "triangle"])
    import_model(store, Path(folder) / "rfdetr-nano-detect.onnx", "rfdetr-nano/1", names, replace=True)
    import_model(store, Path(folder) / "rfdetr-seg-nano.onnx", "rfdetr-seg-nano/1", names, replace=True)
    raw = max(raw_configurations(home, "rfdetr-nano/1", settings_plan(settings), seconds),
              key=lambda config: config.per_second)  # fmt: skip
    env = {"VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
    server = ServerProcess(home / "server-rfdetr.log", env=env).start()
    body = request_body("rfdetr-nano/1", [test_photo(640, 480)])
    try:
        runs = {concurrency: drive(server.url, PATH, body, concurrency, seconds) for concurrency in CONCURRENCY}
    finally:
        server.stop()
    concurrency, best = max(runs.items(), key=lambda run: run[1].per_second)
    ratio = best.per_second / raw.per_second
    targets = [Target("RF-DETR Nano, 640x480: HTTP / best raw throughput", f"{best.per_second:.1f} / "
                      f"{raw.per_second:.1f} per s (c={concurrency}, raw {raw.name})", ratio, ">= 0.90", ratio >= 0.9)]
    for model_id, options in (("rfdetr-nano/1", {"confidence": 0.0, "max_detections": 100}),
                              ("rfdetr-seg-nano/1", {"confidence": 0.0, "max_detections": 100})):
        model = load(home, model_id, settings)
        predictor = model.predictor
        tensor, (transform,) = build_input_batch([DecodedImage.full(cv2.imdecode(
            np.frombuffer(test_photo(640, 480), np.uint8), cv2.IMREAD_COLOR))], predictor.spec)
        outputs = [output[0] for output in predictor.runner.run(tensor)]
        params = predictor.parse_options(options)
        transform = replace(transform, image_width=640, image_height=480)
        forward = repeat(functools.partial(predictor.runner.run, tensor), seconds / 3).mean_ms
        post = repeat(functools.partial(predictor.postprocess, outputs, transform, params), seconds / 3).mean_ms
        share = post / forward
        what = "sigmoid + top-k + 100 masks" if "seg" in model_id else "sigmoid + top-k, 100 boxes"
        targets.append(Target(f"{model_id}: post-processing ({what})", f"{post:.2f} ms vs forward {forward:.2f} ms",
                              share, "<= 0.15", share <= 0.15))
    return targets


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def session_rss_mib(home: Path, model_id: str) -> float:
    """Resident memory one model's session adds (loaded as the server loads it, one warm-up pass at its input
    size), measured in a fresh process with everything else already imported."""
    code = (
        "import sys; from pathlib import Path; from benchmarks.suite import _rss_mib; "
        "from benchmarks.detect import load; from visionserve.config import Settings; settings = Settings(); "
        "before = _rss_mib(); model = load(Path(sys.argv[1]), sys.argv[2], settings); print(_rss_mib() - before)"
    )
    completed = subprocess.run([sys.executable, "-c", code, str(home), model_id], capture_output=True, text=True,
                               check=True, cwd=Path(__file__).parent.parent)
    return float(completed.stdout.strip().splitlines()[-1])


def memory_targets(home: Path, requests: int) -> list[Target]:
    env = {"VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
    server = ServerProcess(home / "server-memory.log", env=env).start()
    pid = server.process.pid  # type: ignore[union-attr]
    rss = lambda: int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096 / 2**20
    models = ["nudenet/1", "nudenet-640/1", *(f"{path.stem}/1" for path in sorted(FIXTURE_MODELS.glob("shapes-*.onnx")))][:8]
    try:
        empty = rss()
        for model_id in models:
            httpx.post(f"{server.url}/model/add", json={"model_id": model_id}, timeout=120).raise_for_status()
        loaded = rss()
        sessions = sum(session_rss_mib(home, model_id) for model_id in models)
        body = request_body("nudenet/1", [test_photo(640, 480)])
        http_load(server.url, "/infer/object_detection", body, 4, requests=500)  # warm every buffer and pool
        before = rss()
        timing = http_load(server.url, "/infer/object_detection", body, 4, requests=requests)
        after = rss()
    finally:
        server.stop()
    added = loaded - empty
    growth = (after - before) / before
    return [
        Target(f"memory of {len(models)} models loaded", f"+{added:.0f} MiB vs sessions {sessions:.0f} MiB "
               f"(server {loaded:.0f} MiB)", added / sessions, "<= 1.20", added / sessions <= 1.2),
        Target(f"RSS over {requests} requests", f"{before:.0f} -> {after:.0f} MiB ({timing.errors} errors)",
               growth, "< 5% growth", growth < 0.05 and timing.errors == 0),
    ]


def oip_body(jpeg: bytes) -> tuple[bytes, dict[str, str]]:
    """An Open Inference Protocol request as Triton's client sends it: one BYTES element in binary data, every
    output answered in binary data."""
    element = struct.pack("<I", len(jpeg)) + jpeg
    header = orjson.dumps({"parameters": {"binary_data_output": True}, "inputs": [
        {"name": "images", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(element)}}]})
    return header + element, {"Content-Type": "application/octet-stream",
                              "Inference-Header-Content-Length": str(len(header))}  # fmt: skip


def oip_binary_targets(home: Path, seconds: float) -> list[Target]:
    """Images in over the protocol's binary data vs base64 JSON on `/infer/object_detection`, nudenet/1 (320), one
    server, best concurrency each. Measured in A-B-B-A order at each concurrency, so drift on a shared machine
    weighs on both alike."""
    env = {"VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
    server = ServerProcess(home / "server-oip.log", env=env).start()
    targets = []
    try:
        for width, height in ((640, 480), (1920, 1080)):
            jpeg = test_photo(width, height)
            loads = {"oip": ("/v2/models/nudenet/versions/1/infer", *oip_body(jpeg)),
                     "json": ("/infer/object_detection", request_body("nudenet/1", [jpeg]), None)}  # fmt: skip
            rates: dict[str, list[float]] = {"oip": [], "json": []}
            for concurrency in (1, 2, 4):
                done = {name: [0, 0.0] for name in loads}  # requests, seconds
                for name in ("oip", "json", "json", "oip"):
                    path, body, headers = loads[name]
                    result = drive(server.url, path, body, concurrency, seconds / 2, headers, warmup_s=0.5)
                    done[name][0] += result.requests
                    done[name][1] += result.wall_s
                for name, (count, wall) in done.items():
                    rates[name].append(count / wall)
            oip, base64_json = max(rates["oip"]), max(rates["json"])
            targets.append(Target(f"OIP binary vs /infer base64 JSON, {width}x{height}",
                                  f"{oip:.1f} vs {base64_json:.1f} req/s", oip / base64_json, ">= 1.00",
                                  oip >= base64_json))  # fmt: skip
    finally:
        server.stop()
    return targets


def prepare_store(home: Path) -> None:
    """nudenet at 640 (the same YOLOv8n at its other size), the fixture models, the segmenter at 640."""
    store = ModelStore(home / "models")
    nudenet = BuiltinModels().find("nudenet/1")
    assert nudenet is not None
    side = DETECTORS["nudenet-640/1"]
    import_model(store, nudenet.weights_path, "nudenet-640/1", ManifestOverrides(input_size=(side, side)))
    for path in sorted(FIXTURE_MODELS.glob("shapes-*.onnx")):
        import_model(store, path, f"{path.stem}/1", ManifestOverrides())
    import_model(store, FIXTURE_MODELS / "shapes-segment-dynamic.onnx", "shapes-segment-640/1",
                 ManifestOverrides(input_size=(640, 640)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each throughput measurement")
    parser.add_argument("--rounds", type=int, default=3, help="detection rounds (targets are their medians)")
    parser.add_argument("--requests", type=int, default=10_000, help="requests for the memory-growth check")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = Settings()
    plan = settings_plan(settings)
    console.print(f"{cpu_model()}, {available_cores()} cores (nproc {os.cpu_count()}): "
                  f"{plan.concurrent_runs} passes x {plan.run_threads} thread(s) under load, {plan.lone_threads} for a "
                  f"lone request, {plan.worker_threads} worker threads; load from {load_generator()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        prepare_store(home)
        rounds = []
        for number in range(args.rounds):
            console.print(f"detection round {number + 1} of {args.rounds}")
            rounds.append(measure_round(home, plan, args.seconds))
        for table in detail_tables(rounds[-1]):
            console.print(table)
        providers = provider_table(args.seconds / 2, repeats=2)
        if providers is not None:
            console.print(providers)
        targets = detection_targets(rounds)
        targets.append(segmentation_target(home, args.seconds, settings))
        targets += rfdetr_targets(home, args.seconds, settings)
        targets += oip_binary_targets(home, args.seconds)
        targets += memory_targets(home, args.requests)
        targets += workflow_targets(home, args.seconds)
        targets += stream_targets(home, args.seconds)
        targets += batching_targets(home, args.seconds)
        targets += kind_targets(home, args.seconds, settings)
        targets += ray_targets(args.seconds)
    table = Table("target", "measured", "ratio", "goal", "result", title="performance targets")
    for target in targets:
        table.add_row(target.name, target.measured, f"{target.ratio:.2f}", target.goal,
                      "[green]PASS[/green]" if target.passed else "[red]MISS[/red]")
    console.print(table)
    console.print(f"benchmark took {time.perf_counter() - started:.0f} s; "
                  f"{statistics.mean(t.passed for t in targets) * 100:.0f}% of targets met")


if __name__ == "__main__":
    main()
