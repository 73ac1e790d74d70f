"""Semantic segmentation: the torchvision LR-ASPP fixture (tests/fixtures/families) served as torchvision's preset
has it (short side to 520, so 693x520 for a 640x480 photo), HTTP throughput vs the best raw forward on an input of
that size, and the post-processing (logits resampled to the photo, softmax, two PNGs) per image vs the forward.

    .venv/bin/python -m benchmarks.semantic [--seconds 4]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console

from benchmarks.detect import load, request_body, test_photo
from benchmarks.detection import CONCURRENCY, raw_configurations
from benchmarks.target import Target
from visionserve.api.state import settings_plan
from visionserve.config import Settings
from visionserve.images.decode import DecodedImage
from visionserve.loadtest import drive, repeat
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.manifest import Normalization, Task
from visionserve.models.store import ModelStore
from visionserve.runtime.threads import available_cores
from visionserve.server_process import ServerProcess
from visionserve.tasks.preprocess import build_input_batch

ROOT = Path(__file__).resolve().parent.parent
LRASPP = ROOT / "tests" / "fixtures" / "families" / "torchvision-lraspp-tiny.onnx"
MODEL_ID = "lraspp/1"
PATH = "/infer/semantic_segmentation"
console = Console()


def semantic_targets(home: Path, seconds: float, settings: Settings) -> list[Target]:
    overrides = ManifestOverrides(task=Task.SEMANTIC_SEGMENTATION, class_names=["circle", "square", "triangle"],
                                  normalization=Normalization.imagenet())
    import_model(ModelStore(home / "models"), LRASPP, MODEL_ID, overrides, replace=True)
    jpeg = test_photo(640, 480)
    image = DecodedImage.full(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    predictor = load(home, MODEL_ID, settings).predictor
    tensor, (transform,) = build_input_batch([image], predictor.spec)
    raw = max(raw_configurations(home, MODEL_ID, settings_plan(settings), seconds, tensor.shape[2:]),
              key=lambda config: config.per_second)  # fmt: skip
    env = {"VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
    server = ServerProcess(home / "server-semantic.log", env=env).start()
    try:
        body = request_body(MODEL_ID, [jpeg])
        runs = {concurrency: drive(server.url, PATH, body, concurrency, seconds) for concurrency in CONCURRENCY}
    finally:
        server.stop()
    concurrency, best = max(runs.items(), key=lambda run: run[1].per_second)
    ratio = best.per_second / raw.per_second
    outputs = [output[0] for output in predictor.runner.run(tensor)]
    transform = replace(transform, image_width=image.width, image_height=image.height)
    forward = repeat(functools.partial(predictor.runner.run, tensor), seconds / 3).mean_ms
    post = repeat(functools.partial(predictor.postprocess, outputs, transform, 0.4), seconds / 3).mean_ms
    shape = "x".join(map(str, tensor.shape[:1:-1]))
    return [
        Target(f"LR-ASPP (torchvision preset, input {shape}), 640x480: HTTP / best raw throughput",
               f"{best.per_second:.1f} / {raw.per_second:.1f} per s (c={concurrency}, raw {raw.name})", ratio,
               ">= 0.85", ratio >= 0.85),
        Target("LR-ASPP: post-processing (3 classes to 640x480, softmax, 2 PNGs)",
               f"{post:.2f} ms vs forward {forward:.2f} ms", post / forward, "<= 0.5", post / forward <= 0.5),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each measurement")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        targets = semantic_targets(Path(scratch), args.seconds, Settings())
    for target in targets:
        verdict = "PASS" if target.passed else "MISS"
        console.print(f"{target.name}: {target.measured}; ratio {target.ratio:.2f} ({target.goal}: {verdict})")
    console.print(f"{available_cores()} cores; benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
