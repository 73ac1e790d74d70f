"""Build small, genuine YOLO-NAS ONNX fixtures with super-gradients itself, and super-gradients' own answers.

One seeded YOLO-NAS S (`models.get(Models.YOLO_NAS_S, num_classes=3)`, no pretrained weights) whose channel counts
are cut to an eighth so the files stay small, BatchNorm statistics re-estimated on synthetic shapes scenes and the
class biases shifted so that about 1% of the anchors score over 0.5. `model.export()` writes it three ways,
without pre-processing in the graph (float RGB 0..1 input, as Roboflow serves YOLO-NAS):

- yolo-nas-tiny.onnx: no post-processing: boxes [1, N, 4] xyxy in input pixels and class scores [1, N, 3];
- yolo-nas-tiny-flat.onnx: NMS in the graph, flat format: [K, 7] rows (image, x1, y1, x2, y2, score, class);
- yolo-nas-tiny-batch.onnx: NMS in the graph, batch format: num_predictions [1, 1], boxes [1, K, 4], scores and
  classes [1, K].

expected.json holds `model.predict()` on the committed test images with the processing set to the reference's
"Fit (grey edges) in" letterbox (longest side to 320, centred on 114 grey, RGB / 255), one class per box, class-aware
NMS; and for the in-graph NMS files what onnxruntime returns, mapped back the same way.

super-gradients 3.7.1 pins 2023-era packages, so it is installed without them, with only what its import and
export need, into .venv-yolo-nas (the Makefile's `yolo-nas-fixtures`, which then runs this script):

    make yolo-nas-fixtures      # = .venv-yolo-nas/bin/python tools/make_yolo_nas_fixtures.py tests/fixtures/yolo_nas

`--bench OUT` writes the benchmark's YOLO-NAS S of full size instead (bench_model).

About a minute on 2 CPU cores. The PyPI torchvision here is a CUDA build next to a CPU torch; see
torchvision_without_ops.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import math
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests" / "fixtures" / "images"
SEED = 0
NAMES = ["circle", "square", "triangle"]
SIZE = 320
CONF, IOU = 0.25, 0.5
TEST_IMAGES = ["detect_0.jpg", "detect_4.jpg", "detect_5.jpg"]  # 320x320, 480x320, 320x480
CHANNEL_SCALE = 8
BENCH_FILE, BENCH_SIZE = "yolo-nas-s.onnx", 640
CHANNEL_KEYS = ("out_channels", "hidden_channels", "output_channels", "inter_channels")


def torchvision_without_ops() -> None:
    """PyPI's torchvision 0.28 is a CUDA build whose `_C.so` cannot load next to the CPU torch; its import then
    fails on `torchvision::nms`: the checkpoint export worker's stand-in (plain torch, no visionserve import)."""
    spec = importlib.util.spec_from_file_location("export_worker", ROOT / "visionserve" / "models" / "export_worker.py")
    assert spec is not None and spec.loader is not None
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    worker.usable_torchvision()


def shrunk(params: Any, scale: int) -> Any:
    """YOLO-NAS S's architecture parameters with every channel count divided by `scale` (at least 8)."""
    if isinstance(params, dict):
        return {key: max(8, value // scale) if key in CHANNEL_KEYS else shrunk(value, scale)
                for key, value in params.items()}
    if isinstance(params, list):
        return [shrunk(value, scale) for value in params]
    return params


def build_model(channel_scale: int = CHANNEL_SCALE, classes: int = len(NAMES)) -> Any:
    import torch
    from super_gradients.common.object_names import Models
    from super_gradients.training import models
    from super_gradients.training.models.arch_params_factory import get_arch_params

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    defaults = get_arch_params("yolo_nas_s_arch_params")
    arch = {key: shrunk(copy.deepcopy(dict(defaults[key])), channel_scale) for key in ("backbone", "neck", "heads")}
    model = models.get(Models.YOLO_NAS_S, num_classes=classes, arch_params=arch)
    scenes = np.stack([letterboxed(scene) for scene in calibration_scenes(16)])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(scenes), 4):
            model(torch.from_numpy(scenes[start : start + 4]))
        model.eval()
        (_, scores), _ = model(torch.from_numpy(scenes))
        # Random weights score most anchors alike: shift every class bias so that about 1% of the anchors pass 0.5.
        cut = float(torch.quantile(scores.max(dim=2).values.flatten(), 0.99))
        for head in model.heads.modules():
            if hasattr(head, "cls_pred"):
                head.cls_pred.bias.sub_(math.log(cut / (1 - cut)))
    return model


def calibration_scenes(count: int) -> list[np.ndarray]:
    sys.path.insert(0, str(ROOT / "tools"))
    import make_fixtures as mf  # the synthetic shapes generator

    return [mf.make_scene(np.random.default_rng([SEED, 78, i]), "detect", SIZE, SIZE)[0] for i in range(count)]


def letterboxed(image_bgr: np.ndarray) -> np.ndarray:
    """The reference's "Fit (grey edges) in" pre-processing, as super-gradients' processing below does it."""
    height, width = image_bgr.shape[:2]
    scale = min(SIZE / height, SIZE / width)
    new_h, new_w = round(height * scale), round(width * scale)
    canvas = np.full((SIZE, SIZE, 3), 114, dtype=np.uint8)
    top, left = (SIZE - new_h) // 2, (SIZE - new_w) // 2
    resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas[top : top + new_h, left : left + new_w] = resized
    return (canvas[:, :, ::-1] / 255.0).transpose(2, 0, 1).astype(np.float32)


def processing() -> Any:
    from super_gradients.training.processing import (
        ComposeProcessing,
        DetectionCenterPadding,
        DetectionLongestMaxSizeRescale,
        ImagePermute,
        StandardizeImage,
    )

    return ComposeProcessing([DetectionLongestMaxSizeRescale(output_shape=(SIZE, SIZE)),
                              DetectionCenterPadding(output_shape=(SIZE, SIZE), pad_value=114),
                              StandardizeImage(max_value=255.0), ImagePermute(permutation=(2, 0, 1))])


def detections(xyxy: Any, scores: Any, classes: Any) -> list[dict[str, Any]]:
    return [{"xyxy": [float(v) for v in box], "score": float(score), "class_id": int(cls)}
            for box, score, cls in zip(np.asarray(xyxy).reshape(-1, 4), np.asarray(scores).ravel(),
                                       np.asarray(classes).ravel())]


def predicted(model: Any) -> dict[str, list[dict[str, Any]]]:
    """super-gradients' own pipeline: its processing, the PyTorch model, its NMS, boxes mapped back by it."""
    model.set_dataset_processing_params(class_names=NAMES, image_processor=processing(), iou=IOU, conf=CONF)
    answers = {}
    for name in TEST_IMAGES:
        rgb = cv2.cvtColor(cv2.imread(str(IMAGES / name)), cv2.COLOR_BGR2RGB)
        result = model.predict(rgb, fuse_model=False, fp16=False, multi_label_per_box=False,
                               class_agnostic_nms=False).prediction
        answers[name] = detections(result.bboxes_xyxy, result.confidence, result.labels)
    return answers


def in_graph_nms(path: Path, flat: bool) -> dict[str, list[dict[str, Any]]]:
    """onnxruntime on an NMS export, rows read as super-gradients documents each format, boxes mapped back."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    answers = {}
    for name in TEST_IMAGES:
        image = cv2.imread(str(IMAGES / name))
        outputs = session.run(None, {session.get_inputs()[0].name: letterboxed(image)[None]})
        if flat:
            rows = outputs[0]
            boxes, scores, classes = rows[:, 1:5], rows[:, 5], rows[:, 6]
        else:
            count = int(outputs[0][0, 0])
            boxes, scores, classes = outputs[1][0, :count], outputs[2][0, :count], outputs[3][0, :count]
        height, width = image.shape[:2]
        scale = min(SIZE / height, SIZE / width)
        pad = np.array([(SIZE - round(width * scale)) // 2, (SIZE - round(height * scale)) // 2] * 2)
        answers[name] = detections((boxes - pad) / scale, scores, classes)
    return answers


def io_of(path: Path) -> dict[str, Any]:
    import onnx

    graph = onnx.load(str(path)).graph

    def shape(value: Any) -> list[Any]:
        return [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]

    return {
        "inputs": [{"name": value.name, "shape": shape(value)} for value in graph.input],
        "outputs": [{"name": value.name, "shape": shape(value)} for value in graph.output],
        "size": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def prepare_export() -> None:
    torchvision_without_ops()
    import torch

    torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)  # the exporter super-gradients knows


def bench_model(out: Path) -> None:
    """YOLO-NAS S at its published size (every channel, COCO's 80 classes, 640 input), no NMS in the graph: the
    model-kinds benchmark's (tools/make_bench_models.py runs this with --bench)."""
    prepare_export()
    out.mkdir(parents=True, exist_ok=True)
    build_model(channel_scale=1, classes=80).export(str(out / BENCH_FILE), preprocessing=False, postprocessing=False,
                                                    input_image_shape=(BENCH_SIZE, BENCH_SIZE))  # fmt: skip


def main(out: Path) -> None:
    started = time.perf_counter()
    prepare_export()
    from super_gradients.conversion import DetectionOutputFormatMode

    out.mkdir(parents=True, exist_ok=True)
    model = build_model()
    expected: dict[str, Any] = {"names": NAMES, "size": SIZE, "conf": CONF, "iou": IOU,
                                "parameters": sum(p.numel() for p in model.parameters())}
    exports = {
        "yolo-nas-tiny.onnx": {"postprocessing": False},
        "yolo-nas-tiny-flat.onnx": {"output_predictions_format": DetectionOutputFormatMode.FLAT_FORMAT},
        "yolo-nas-tiny-batch.onnx": {"output_predictions_format": DetectionOutputFormatMode.BATCH_FORMAT},
    }
    for file, options in exports.items():
        nms = {} if "postprocessing" in options else {"confidence_threshold": CONF, "nms_threshold": IOU}
        model.export(str(out / file), preprocessing=False, input_image_shape=(SIZE, SIZE), **nms, **options)
        expected[file] = io_of(out / file)
    expected["yolo-nas-tiny.onnx"]["predict"] = predicted(model)
    for file in ("yolo-nas-tiny-flat.onnx", "yolo-nas-tiny-batch.onnx"):
        expected[file]["onnxruntime"] = in_graph_nms(out / file, flat="flat" in file)
    packages = ("super-gradients", "torch", "onnx", "onnxruntime")
    expected["versions"] = {name: metadata.version(name) for name in packages}
    expected["seconds"] = round(time.perf_counter() - started, 1)
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"done in {expected['seconds']} s -> {out}")


if __name__ == "__main__":
    if sys.argv[1] == "--bench":
        bench_model(Path(sys.argv[2]))
    else:
        main(Path(sys.argv[1]))
