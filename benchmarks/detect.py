"""Object detection, measured three ways side by side in one run on the same model and photo:

1. the raw ONNX Runtime forward pass on a ready tensor (the floor),
2. the in-process pipeline: decode + preprocess + forward + postprocess, with a per-stage profile,
3. HTTP through a real uvicorn server at 1 and 4 concurrent clients.

    python -m benchmarks.detect [--seconds 5] [--model nudenet/1] [--size 640x480]
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
from pathlib import Path

import cv2
import orjson
import skimage.data
from rich.console import Console
from rich.table import Table

from visionserve.api.state import settings_runtime
from visionserve.config import Settings
from visionserve.images.decode import DecodeLimits, decode_image
from visionserve.loadtest import Timing, http_load, repeat
from visionserve.models.builtin import BuiltinModels
from visionserve.models.loader import LoadedModel, load_model
from visionserve.models.store import ModelStore
from visionserve.server_process import ServerProcess
from visionserve.tasks.preprocess import build_input_batch

console = Console(width=120)
NO_LIMITS = DecodeLimits(max_pixels=10**9, max_jpeg_scans=10**6)  # stage timings measure decoding, not the guards


def test_photo(width: int, height: int) -> bytes:
    """The astronaut photo at the requested size, as a JPEG (quality 90, as cameras and browsers send)."""
    rgb = cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpeg.tobytes()


def load(home: Path, model_id: str, settings: Settings) -> LoadedModel:
    """A model from the store under `home` (or built in), opened as the server opens it with `settings`."""
    package = ModelStore(home / "models").find(model_id) or BuiltinModels().find(model_id)
    if package is None:
        raise SystemExit(f"unknown model {model_id}")
    return load_model(model_id, package, settings_runtime(settings), settings.max_batch_size)


def request_body(model_id: str, jpegs: list[bytes]) -> bytes:
    """An `/infer` body: the JPEGs as base64, one image or a list."""
    images = [{"type": "base64", "value": base64.b64encode(jpeg).decode()} for jpeg in jpegs]
    return orjson.dumps({"model_id": model_id, "image": images if len(images) > 1 else images[0]})


def profile_stages(model: LoadedModel, jpeg: bytes, seconds: float) -> dict[str, Timing]:
    """Each stage of the pipeline timed on its own, the same calls the server makes."""
    predictor = model.predictor
    options = {"confidence": 0.4}
    needed = predictor.needed_scale(options)
    image = decode_image(jpeg, NO_LIMITS, needed=needed)
    tensor, transforms = build_input_batch([image], predictor.spec, predictor.runner.batch_size)
    outputs = predictor.runner.run(tensor)
    params = predictor.parse_options(options)
    slice_ = [output[0] for output in outputs]
    stage = seconds / 5
    return {
        "decode": repeat(lambda: decode_image(jpeg, NO_LIMITS, needed=needed), stage),
        "preprocess": repeat(lambda: build_input_batch([image], predictor.spec, predictor.runner.batch_size), stage),
        "forward": repeat(lambda: predictor.runner.run(tensor, may_widen=True), stage),  # as a lone request runs it
        "postprocess": repeat(lambda: predictor.postprocess(slice_, transforms[0], params), stage),
        "pipeline": repeat(lambda: predictor.predict([decode_image(jpeg, NO_LIMITS, needed=needed)], options), stage),
    }


def run(model_id: str, width: int, height: int, seconds: float) -> None:
    settings = Settings()
    jpeg = test_photo(width, height)
    model = load(settings.home, model_id, settings)
    hw = "x".join(map(str, model.predictor.input_hw))
    console.print(f"model {model_id} (input {hw}), photo {width}x{height} JPEG {len(jpeg) // 1024} KiB, "
                  f"providers {','.join(model.predictor.runner.providers)}")

    stages = profile_stages(model, jpeg, seconds)
    raw = stages["forward"]
    del model  # the server process below has its own copy; keep the cores' caches fair

    body = request_body(model_id, [jpeg])
    http: dict[int, Timing] = {}
    with tempfile.TemporaryDirectory() as scratch:
        server = ServerProcess(Path(scratch) / "server.log", env={"VISIONSERVE_LOG_LEVEL": "warning"}).start()
        try:
            for concurrency in (1, 4):
                http[concurrency] = http_load(server.url, "/infer/object_detection", body, concurrency, seconds)
        finally:
            server.stop()

    table = Table(title="object detection: raw forward vs pipeline vs HTTP")
    for column in ("measurement", "per second", "mean ms", "p50 ms", "p95 ms", "vs raw forward"):
        table.add_column(column, justify="right" if column != "measurement" else "left")

    def row(name: str, timing: Timing) -> None:
        table.add_row(
            name, f"{timing.per_second:.1f}", f"{timing.mean_ms:.2f}", f"{timing.percentile_ms(50):.2f}",
            f"{timing.percentile_ms(95):.2f}", f"{timing.per_second / raw.per_second:.2f}x",
        )

    row("raw ONNX Runtime forward", raw)
    row("in-process pipeline", stages["pipeline"])
    for concurrency, timing in http.items():
        row(f"HTTP, {concurrency} client{'s' if concurrency > 1 else ''}", timing)
    console.print(table)

    profile = Table(title="where the time goes (in-process, one image)")
    profile.add_column("stage")
    profile.add_column("mean ms", justify="right")
    profile.add_column("share of pipeline", justify="right")
    total = stages["pipeline"].mean_ms
    for name in ("decode", "preprocess", "forward", "postprocess"):
        profile.add_row(name, f"{stages[name].mean_ms:.2f}", f"{100 * stages[name].mean_ms / total:.0f}%")
    profile.add_row("pipeline (end to end)", f"{total:.2f}", "100%")
    console.print(profile)

    best = max(http.values(), key=lambda timing: timing.per_second)
    errors = sum(timing.errors for timing in http.values())
    console.print(
        f"HTTP throughput / raw forward throughput: [bold]{best.per_second / raw.per_second:.2f}[/bold] "
        f"(best concurrency); HTTP p50 at 1 client = raw forward + "
        f"{http[1].percentile_ms(50) - raw.percentile_ms(50):.2f} ms; non-200 responses: {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nudenet/1")
    parser.add_argument("--size", default="640x480", help="photo size, WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.lower().split("x"))
    started = time.perf_counter()
    run(args.model, width, height, args.seconds)
    console.print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
