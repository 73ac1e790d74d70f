"""HTTP vs the raw forward pass for one model of real size of each kind the families issue added: semantic
segmentation (torchvision's LR-ASPP MobileNetV3-Large), a ResNet-18 classifier as the weights API's `resnet18`
serves it, a multi-label (sigmoid) ResNet-18, RF-DETR keypoints (rfdetr's 576 preview export) and YOLO-NAS S at
640. Goal: >= 0.90 each, the server at its defaults, load from wrk at the best client count against the best raw
configuration.

The models come from `tools/make_bench_models.py` (`make bench` builds them into a cache folder named by
`VISIONSERVE_BENCH_MODELS`) and the RF-DETR fixture cache (`VISIONSERVE_RFDETR_FIXTURES`); a kind whose file is
missing is reported as not measured.

    .venv/bin/python -m benchmarks.model_kinds [--seconds 4]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console

from benchmarks.detect import load, request_body, test_photo
from benchmarks.detection import CONCURRENCY, RawForward, raw_configurations
from benchmarks.target import Target
from visionserve.api.state import settings_plan
from visionserve.config import Settings
from visionserve.images.decode import DecodedImage
from visionserve.loadtest import LoadResult, drive, repeat
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.manifest import Normalization, ResizeMode, Task
from visionserve.models.store import ModelStore
from visionserve.runtime.threads import available_cores
from visionserve.server_process import ServerProcess
from visionserve.tasks.preprocess import build_input_batch

GOAL = 0.90
SEMANTIC_ROUTE = "/infer/semantic_segmentation"
PASSES = 16  # the fewest forward passes a raw measurement may last
# wrk drops the requests still in flight when it stops, on average half a request per client: 0.5 / passes of the
# rate. 40 passes keep that near 1% (16 passes: 3%, as YOLO-NAS at 640 showed), up to 90 s a client count.
HTTP_PASSES, HTTP_MAX_S = 40, 90.0
KIND_CONCURRENCY = (2, 4)  # a forward-bound model on 2 cores peaks here (the detection bench: 1 to 8)
COCO_POINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
               "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
               "right_knee", "left_ankle", "right_ankle"]  # fmt: skip
console = Console()


@dataclass(frozen=True)
class HttpVsRaw:
    http: LoadResult  # at the best client count
    concurrency: int
    raw: RawForward  # the best raw configuration
    input_shape: str  # the tensor one request's photo becomes, width x height

    @property
    def ratio(self) -> float:
        return self.http.per_second / self.raw.per_second

    def described(self) -> str:
        return (f"{self.http.per_second:.1f} / {self.raw.per_second:.1f} per s (c={self.concurrency}, "
                f"raw {self.raw.name}, input {self.input_shape})")  # fmt: skip


def http_vs_raw(
    home: Path, model_id: str, route: str, jpeg: bytes, seconds: float, settings: Settings,
    concurrencies: tuple[int, ...] = CONCURRENCY,
) -> HttpVsRaw:
    """A stored model served at `settings` by a real server, each client count in turn, against the raw session
    on the tensor this photo becomes (dynamic-size models get the photo's own size), measured before and after
    the server's turn. Each raw measurement lasts at least `PASSES` forward passes and each HTTP one `HTTP_PASSES`
    (within `HTTP_MAX_S`), so a slow model is not judged on a few requests."""
    image = DecodedImage.full(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    predictor = load(home, model_id, settings).predictor
    tensor, _ = build_input_batch([image], predictor.spec)
    pass_s = repeat(functools.partial(predictor.runner.run, tensor), 0.5).mean_ms / 1000
    seconds, http_seconds = max(seconds, PASSES * pass_s), max(seconds, min(HTTP_PASSES * pass_s, HTTP_MAX_S))
    del predictor
    plan, hw = settings_plan(settings), tensor.shape[2:]
    raw_before = raw_configurations(home, model_id, plan, seconds, hw)
    env = {"VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
    server = ServerProcess(home / f"server-{model_id.replace('/', '-')}.log", env=env).start()
    try:
        body = request_body(model_id, [jpeg])
        runs = {concurrency: drive(server.url, route, body, concurrency, http_seconds) for concurrency in concurrencies}
    finally:
        server.stop()
    # Raw before and after the server's turn, averaged: a shared VM drifts within minutes.
    raw = max((replace(before, per_second=(before.per_second + after.per_second) / 2)
               for before, after in zip(raw_before, raw_configurations(home, model_id, plan, seconds, hw))),
              key=lambda config: config.per_second)  # fmt: skip
    concurrency, best = max(runs.items(), key=lambda run: run[1].per_second)
    return HttpVsRaw(best, concurrency, raw, "x".join(map(str, tensor.shape[:1:-1])))


@dataclass(frozen=True)
class Kind:
    title: str
    file: Path | None
    model_id: str
    route: str
    overrides: ManifestOverrides


def kinds(bench_models: Path | None, rfdetr_fixtures: Path | None) -> list[Kind]:
    def bench(name: str) -> Path | None:
        return bench_models / name if bench_models else None

    classes = [f"class-{index}" for index in range(10)]
    classifier = ManifestOverrides(task=Task.CLASSIFICATION, class_names=classes, resize=ResizeMode.STRETCH,
                                   normalization=Normalization.imagenet())  # the weights API's resnet18 type
    regions = ["background"] + [f"region-{index}" for index in range(20)]  # 21, as torchvision's VOC weights
    semantic = ManifestOverrides(task=Task.SEMANTIC_SEGMENTATION, class_names=regions,
                                 normalization=Normalization.imagenet())
    keypoints = ManifestOverrides(class_names=["person"], keypoint_names={0: COCO_POINTS})
    detector = ManifestOverrides(class_names=[f"class-{index}" for index in range(80)])  # the outputs tell the family
    return [
        Kind("semantic segmentation, LR-ASPP MobileNetV3-Large, 21 classes",
             bench("lraspp-mobilenet-v3-large.onnx"), "lraspp-large/1", SEMANTIC_ROUTE, semantic),
        Kind("classification, ResNet-18 (weights API resnet18: stretch 224, ImageNet)", bench("resnet18.onnx"),
             "resnet18-bench/1", "/infer/classification", classifier),
        Kind("multi-label classification, ResNet-18 + sigmoid", bench("resnet18-multilabel.onnx"),
             "resnet18-multilabel/1", "/infer/classification",
             replace(classifier, multilabel=True)),
        Kind("RF-DETR keypoints, rfdetr's 576 preview export",
             rfdetr_fixtures / "rfdetr-keypoint-preview.onnx" if rfdetr_fixtures else None,
             "rfdetr-keypoints/1", "/infer/keypoints_detection", keypoints),
        Kind("detection, YOLO-NAS S (super-gradients export, 640, no NMS in the graph)", bench("yolo-nas-s.onnx"),
             "yolo-nas-s-bench/1", "/infer/object_detection", detector),
    ]  # fmt: skip


def kind_targets(home: Path, seconds: float, settings: Settings) -> list[Target]:
    """One target per kind, on a 640x480 photo; a kind without its model file is a MISS that says so."""
    bench_models, rfdetr = map(os.environ.get, ("VISIONSERVE_BENCH_MODELS", "VISIONSERVE_RFDETR_FIXTURES"))
    jpeg = test_photo(640, 480)
    targets = []
    for kind in kinds(Path(bench_models) if bench_models else None, Path(rfdetr) if rfdetr else None):
        name = f"{kind.title}, 640x480: HTTP / best raw throughput"
        if kind.file is None or not kind.file.is_file():
            targets.append(Target(name, "not measured: model file missing (run `make bench`)", 0.0, f">= {GOAL}",
                                  False))  # fmt: skip
            continue
        import_model(ModelStore(home / "models"), kind.file, kind.model_id, kind.overrides, replace=True)
        run = http_vs_raw(home, kind.model_id, kind.route, jpeg, seconds, settings, KIND_CONCURRENCY)
        targets.append(Target(name, run.described(), run.ratio, f">= {GOAL}", run.ratio >= GOAL))
        if kind.route == SEMANTIC_ROUTE:
            targets.append(semantic_post_target(home, kind.model_id, jpeg, seconds, settings))
    return targets


def semantic_post_target(home: Path, model_id: str, jpeg: bytes, seconds: float, settings: Settings) -> Target:
    """The post-processing (every class's logits resampled to the photo, softmax, two PNGs) against the forward
    pass it follows, both on one thread of this process."""
    predictor = load(home, model_id, settings).predictor
    image = DecodedImage.full(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    tensor, (transform,) = build_input_batch([image], predictor.spec)
    outputs = [output[0] for output in predictor.runner.run(tensor)]
    transform = replace(transform, image_width=image.width, image_height=image.height)
    forward = repeat(functools.partial(predictor.runner.run, tensor), seconds / 2).mean_ms
    post = repeat(functools.partial(predictor.postprocess, outputs, transform, 0.4), seconds / 2).mean_ms
    classes = len(predictor.class_names)
    return Target(f"semantic post-processing ({classes} classes to {image.width}x{image.height}, softmax, 2 PNGs)",
                  f"{post:.2f} ms vs forward {forward:.2f} ms", post / forward, "<= 0.1", post / forward <= 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each measurement")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        targets = kind_targets(Path(scratch), args.seconds, Settings())
    for target in targets:
        verdict = "PASS" if target.passed else "MISS"
        console.print(f"{target.name}: {target.measured}; ratio {target.ratio:.2f} ({target.goal}: {verdict})")
    console.print(f"{available_cores()} cores; benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
