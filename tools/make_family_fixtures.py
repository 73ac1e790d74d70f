"""Build small, genuine ONNX fixtures for more model families, each made by the family's own package, with that
package's own answers on the committed test images as the expected results (expected.json).

Files (all seeded, nothing downloaded; see the README.md written next to them):

- rtdetr-shapes.onnx: an Ultralytics RT-DETR (yolov8-like backbone at width 0.125, `RTDETRDecoder` head with 3
  decoder layers), trained briefly on CPU on tools/make_fixtures.py's synthetic shapes, exported by Ultralytics.
  Expected: `RTDETR("rtdetr-shapes.onnx").predict(...)`.
- yolox-nano-shapes-raw.onnx / yolox-nano-shapes-decoded.onnx: pip `yolox`'s yolox-nano (`get_exp`, nc=3), trained
  briefly with yolox's own loss, exported as yolox's tools/export_onnx.py does, once with
  `head.decode_in_inference = False` (raw, grid-relative) and once with True (decoded). Expected: yolox's demo
  pipeline (`preproc`, `demo_postprocess`, `multiclass_nms`) and `yolox.utils.postprocess`.
- torchvision-mobilenet_v3_small.onnx: torchvision `mobilenet_v3_small(width_mult=0.5, num_classes=3)`, random
  weights, BatchNorm statistics re-estimated. Expected: torchvision's ImageNet eval preset + onnxruntime + softmax.
- torchvision-vit-tiny.onnx / torchvision-vit-tiny-sigmoid.onnx: a one-layer torchvision `VisionTransformer`
  (patch 32, hidden 32, 3 classes), random weights, exported with plain logits and with a sigmoid appended.
  Expected: torch's probabilities on the reference server's `vit` pre-processing (stretch, mean = std = 0.5).
- shapes-detect-dynamic-nms.onnx: tools/make_fixtures.py's shapes detector retrained (shorter run), exported with
  `dynamic=True, nms=True` at batch 1. Expected: Ultralytics' predictor per image, plus what onnxruntime returns for
  a batch of two images (the second image's rows are lost).
- yolo26-sem-tiny.onnx / yolo26-depth-tiny.onnx: the YOLO26 semantic segmentation and depth yamls bundled in
  ultralytics, at width 0.125, random weights, exported at 160. Layouts and metadata only.
- expected.json also holds Ultralytics' own classify probabilities for tests/fixtures/models/shapes-classify.onnx.

Set up the venv as the Makefile's `family-fixtures` target does (CPU torch; yolox built without its pins):

    python3.11 -m venv .venv-fixtures
    .venv-fixtures/bin/pip install torch==2.13.0
    .venv-fixtures/bin/pip install ultralytics==8.4.190 torchvision==0.28.0 onnx onnxslim onnxruntime
    .venv-fixtures/bin/pip install loguru tabulate tqdm pycocotools
    .venv-fixtures/bin/pip install --no-deps --no-build-isolation yolox==0.3.0

Run (about 15 minutes on 2 CPU cores; scratch goes to $FIXTURES_WORK/families, default /tmp/fixtures-work):

    .venv-fixtures/bin/python tools/make_family_fixtures.py tests/fixtures/families [--only rtdetr,yolox,...]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (the shapes generator, offline setup, training recipe, exporter)

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests" / "fixtures" / "images"
SHAPES_CLASSIFY = ROOT / "tests" / "fixtures" / "models" / "shapes-classify.onnx"
WORK = mf.WORK_DIR / "families"
SEED = 0
NAMES = ["circle", "square", "triangle"]
DETECT_IMAGES = ["detect_0.jpg", "detect_4.jpg", "detect_5.jpg"]  # 320x320, 480x320, 320x480
CLASSIFY_IMAGES = ["classify_0.jpg", "classify_1.jpg", "classify_2.jpg", "classify_3.jpg", "detect_4.jpg"]
FAMILIES = ("rtdetr", "yolox", "torchvision", "vit", "ultralytics-classify", "dynamic-nms", "yolo26")
PINNED = ("ultralytics", "torch", "torchvision", "yolox", "onnx", "onnxslim", "onnxruntime", "numpy", "opencv-python",
          "pillow")

# Budgets for the short CPU training runs (2 cores).
RTDETR_EPOCHS = 12
RTDETR_CONF = 0.01
YOLOX_SIZE = (416, 416)
VIT_SIZE = 224
YOLOX_STEPS = 0  # >0: a short AdamW run with yolox's own loss (only smoke-tested: 20 steps)
YOLOX_SCORE, YOLOX_NMS = 0.05, 0.45
YOLOX_KEEP = 100  # random weights leave thousands of boxes: expected.json keeps the first (highest-scoring) 100
DETECT_EPOCHS = 8
SEMANTIC_README_BLOCK = "<!-- semantic fixtures -->"  # where tools/make_semantic_fixtures.py's section starts


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------


def seed_everything() -> None:
    import torch

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


def io_of(path: Path) -> dict[str, Any]:
    """Input, outputs and metadata of an ONNX file (make_fixtures.describe_onnx's fields)."""
    info = mf.describe_onnx(path)
    return {
        "input": {k: info["inputs"][0][k] for k in ("name", "shape", "dtype")},
        "outputs": info["outputs"],
        "opset": info["opset"],
        "size": info["size"],
        "sha256": info["sha256"],
        "metadata": info["metadata_props"],
    }


def detections(xyxy: Any, scores: Any, classes: Any) -> list[dict[str, Any]]:
    return [
        {"xyxy": [float(v) for v in box], "score": float(score), "class_id": int(cls)}
        for box, score, cls in zip(np.asarray(xyxy).reshape(-1, 4), np.asarray(scores).ravel(),
                                   np.asarray(classes).ravel())
    ]


def ultralytics_detections(result: Any) -> list[dict[str, Any]]:
    boxes = result.boxes
    return detections(boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy())


def calibration_scenes(count: int) -> list[np.ndarray]:
    """Fresh shapes scenes (BGR, 320x320) from a seed no split of make_fixtures uses."""
    return [mf.make_scene(np.random.default_rng([SEED, 77, i]), "detect", 320, 320)[0] for i in range(count)]


def reestimate_batchnorm(model: Any, batches: list[Any], forward: Any = None) -> None:
    """Recompute every BatchNorm's running mean/var as the plain average over `batches` (eval mode elsewhere)."""
    import torch

    model.eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
        norm.train()
    with torch.no_grad():
        for batch in batches:
            (forward or model)(batch)
    model.eval()


def ultralytics_yaml(name: str, cfg: dict[str, Any]) -> Path:
    from ultralytics.utils import YAML

    path = WORK / "cfg" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    YAML.save(path, cfg)
    return path


_DATA: dict[str, Path] = {}


def shapes_data() -> Path:
    """make_fixtures' detect data set (384 train / 32 val scenes), written once."""
    if "detect" not in _DATA:
        _DATA["detect"] = mf.write_detection_dataset("detect", WORK / "datasets" / "detect")
    return _DATA["detect"]


def move_export(exported: str | Path, destination: Path) -> Path:
    shutil.move(str(exported), destination)
    return destination


# ----------------------------------------------------------------------------------------------------------
# 1. Ultralytics RT-DETR
# ----------------------------------------------------------------------------------------------------------

# yolov8's backbone and PAN neck (depth 0.33, width 0.125, max 256 channels) feeding an RTDETRDecoder with hidden
# dim 64, 300 queries, 4 sampling points, 4 heads, 3 decoder layers and a 256-wide feed-forward.
RTDETR_CFG = {
    "nc": 3,
    "scales": {"t": [0.33, 0.125, 256]},
    "backbone": [
        [-1, 1, "Conv", [64, 3, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 3, "C2f", [128, True]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 6, "C2f", [256, True]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 6, "C2f", [512, True]],
        [-1, 1, "Conv", [1024, 3, 2]],
        [-1, 3, "C2f", [1024, True]],
        [-1, 1, "SPPF", [1024, 5]],
    ],
    "head": [
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 6], 1, "Concat", [1]],
        [-1, 3, "C2f", [512]],
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 3, "C2f", [256]],
        [-1, 1, "Conv", [256, 3, 2]],
        [[-1, 12], 1, "Concat", [1]],
        [-1, 3, "C2f", [512]],
        [-1, 1, "Conv", [512, 3, 2]],
        [[-1, 9], 1, "Concat", [1]],
        [-1, 3, "C2f", [1024]],
        [[15, 18, 21], 1, "RTDETRDecoder", [3, 64, 300, 4, 4, 3, 256]],
    ],
}


def build_rtdetr(out: Path, epochs: int, weights: Path | None) -> dict[str, Any]:
    import torch
    from ultralytics import RTDETR

    seed_everything()
    cfg = ultralytics_yaml("rtdetr-shapes", RTDETR_CFG)
    model = RTDETR(str(cfg))
    since = time.perf_counter()
    metrics: dict[str, float] = {}
    if weights is not None:  # a best.pt from an earlier run of this same recipe (training takes 10+ minutes)
        model = RTDETR(str(weights))
    elif epochs > 0:
        model.train(
            data=str(shapes_data()), epochs=epochs, imgsz=mf.TRAIN_IMGSZ, batch=8, nbs=8, workers=0, cache="ram",
            device="cpu", seed=SEED, val=False, plots=False, warmup_epochs=0.5, project=str(WORK / "runs"),
            name="rtdetr-shapes", exist_ok=True, pretrained=False,
        )
        metrics = {k: round(float(v), 4) for k, v in model.trainer.metrics.items() if k.startswith("metrics/")}
        model = RTDETR(str(model.trainer.best))
    else:
        scenes = calibration_scenes(16)
        batches = [torch.from_numpy(np.concatenate([mf.letterbox(s, (160, 160))[0] for s in scenes[i : i + 4]]))
                   for i in range(0, 16, 4)]
        reestimate_batchnorm(model.model, batches)
    train_s = time.perf_counter() - since
    path = move_export(model.export(format="onnx", imgsz=mf.TRAIN_IMGSZ, simplify=True), out / "rtdetr-shapes.onnx")

    predictor = RTDETR(str(path))
    images = {}
    for name in DETECT_IMAGES:
        result = predictor.predict(str(IMAGES / name), conf=RTDETR_CONF, imgsz=mf.TRAIN_IMGSZ, verbose=False)[0]
        images[name] = ultralytics_detections(result)
    return {
        "family": "ultralytics-rtdetr",
        **io_of(path),
        "settings": {
            "reference": "ultralytics RTDETR('rtdetr-shapes.onnx').predict(path, conf, imgsz) (RTDETRPredictor)",
            "conf": RTDETR_CONF,
            "conf_rule": "score > conf",
            "imgsz": mf.TRAIN_IMGSZ,
            "max_det": 300,
            "iou": None,
            "nms": "none",
            "preprocess": "cv2 BGR -> stretch to 160x160 (LetterBox scale_fill, cv2.INTER_LINEAR, no pad) -> RGB /255",
            "postprocess": "output rows [cx, cy, w, h, score, class] normalised 0-1; xyxy * (orig_w, orig_h); "
            "no clipping",
        },
        "training": {"epochs": epochs, "seconds": round(train_s, 1), "ultralytics_val": metrics,
                     "weights": f"reused {weights.name} of an earlier identical run" if weights else "trained here"}
        if epochs > 0 else {"random_weights": True, "batchnorm_reestimated": True},
        "images": images,
    }


# ----------------------------------------------------------------------------------------------------------
# 2. YOLOX (pip yolox 0.3.0)
# ----------------------------------------------------------------------------------------------------------


def yolox_model() -> tuple[Any, Any]:
    from yolox.exp import get_exp

    seed_everything()
    exp = get_exp(None, "yolox-nano")
    exp.num_classes = len(NAMES)
    exp.test_size = YOLOX_SIZE
    return exp, exp.get_model()


def yolox_batches(steps: int, batch: int) -> Any:
    """Training batches from make_fixtures' detect scenes through yolox's own `preproc` (BGR 0-255, top-left pad),
    with labels [cls, cx, cy, w, h] in network-input pixels, and a random horizontal flip."""
    import torch
    from yolox.data.data_augment import preproc

    root = shapes_data().parent
    files = sorted((root / "images" / "train").glob("*.png"))
    rng = np.random.default_rng([SEED, 55])
    for _ in range(steps):
        chosen = rng.choice(len(files), batch, replace=False)
        inputs, targets = [], np.zeros((batch, 16, 5), np.float32)
        for row, index in enumerate(chosen):
            image = cv2.imread(str(files[index]))
            labels = np.loadtxt(root / "labels" / "train" / f"{files[index].stem}.txt", ndmin=2)
            if rng.random() < 0.5:
                image = np.ascontiguousarray(image[:, ::-1])
                labels[:, 1] = 1 - labels[:, 1]
            tensor, ratio = preproc(image, YOLOX_SIZE)
            inputs.append(tensor)
            h, w = image.shape[:2]
            scale = np.array([w, h, w, h]) * ratio
            targets[row, : len(labels), 0] = labels[:, 0]
            targets[row, : len(labels), 1:] = labels[:, 1:] * scale
        yield torch.from_numpy(np.stack(inputs)), torch.from_numpy(targets)


def train_yolox(model: Any, steps: int) -> list[float]:
    import torch

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    losses = []
    for step, (inputs, targets) in enumerate(yolox_batches(steps, 8)):
        loss = model(inputs, targets)["total_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss))
        if step % 20 == 0:
            print(f"  yolox step {step}/{steps} loss {np.mean(losses[-20:]):.3f}", flush=True)
    model.eval()
    return losses


def export_yolox(model: Any, path: Path, decode: bool) -> Path:
    """As yolox's tools/export_onnx.py: yolox's export SiLU, `decode_in_inference`, TorchScript exporter, opset 11,
    input `images`, output `output`, static batch 1."""
    import copy

    import torch
    from yolox.models.network_blocks import SiLU
    from yolox.utils import replace_module

    model = replace_module(copy.deepcopy(model).eval(), torch.nn.SiLU, SiLU)
    model.head.decode_in_inference = decode
    dummy = torch.randn(1, 3, *YOLOX_SIZE)
    torch.onnx.export(model, dummy, str(path), input_names=["images"], output_names=["output"], opset_version=11,
                      dynamo=False)
    return path


def yolox_expected(path: Path, raw: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """yolox's ONNXRuntime demo (demo/ONNXRuntime/onnx_inference.py) and yolox.utils.postprocess on the same output."""
    import onnxruntime as ort
    import torch
    from yolox.data.data_augment import preproc
    from yolox.utils import demo_postprocess, multiclass_nms, postprocess

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    demo, torch_path, counts, counts_postprocess = {}, {}, {}, {}
    for name in DETECT_IMAGES:
        image = cv2.imread(str(IMAGES / name))
        tensor, ratio = preproc(image, YOLOX_SIZE)
        output = session.run(None, {session.get_inputs()[0].name: tensor[None]})[0]
        decoded = demo_postprocess(output.copy(), YOLOX_SIZE) if raw else output.copy()
        predictions = decoded[0]
        boxes = predictions[:, :4]
        scores = predictions[:, 4:5] * predictions[:, 5:]
        xyxy = np.empty_like(boxes)
        xyxy[:, 0] = boxes[:, 0] - boxes[:, 2] / 2.0
        xyxy[:, 1] = boxes[:, 1] - boxes[:, 3] / 2.0
        xyxy[:, 2] = boxes[:, 0] + boxes[:, 2] / 2.0
        xyxy[:, 3] = boxes[:, 1] + boxes[:, 3] / 2.0
        xyxy /= ratio
        dets = multiclass_nms(xyxy, scores, nms_thr=YOLOX_NMS, score_thr=YOLOX_SCORE)
        demo[name] = [] if dets is None else detections(dets[:, :4], dets[:, 4], dets[:, 5])
        counts[name] = len(demo[name])
        demo[name] = demo[name][:YOLOX_KEEP]
        kept = postprocess(torch.from_numpy(decoded.copy()), len(NAMES), YOLOX_SCORE, YOLOX_NMS)[0]
        if kept is None:
            torch_path[name] = []
        else:
            kept = kept.numpy()
            torch_path[name] = detections(kept[:, :4] / ratio, kept[:, 4] * kept[:, 5], kept[:, 6])
        counts_postprocess[name] = len(torch_path[name])
        torch_path[name] = torch_path[name][:YOLOX_KEEP]
    return demo, torch_path, counts, counts_postprocess


def build_yolox(out: Path, steps: int) -> dict[str, Any]:
    exp, model = yolox_model()
    since = time.perf_counter()
    losses = train_yolox(model, steps) if steps else []
    train_s = time.perf_counter() - since
    if not steps:
        from yolox.data.data_augment import preproc
        import torch

        scenes = [preproc(s, YOLOX_SIZE)[0] for s in calibration_scenes(16)]
        reestimate_batchnorm(model, [torch.from_numpy(np.stack(scenes[i : i + 4])) for i in range(0, 16, 4)])
        # get_model() sets the objectness and class biases to a 1e-2 prior (scores ~1e-4: nothing would pass any
        # usual threshold); a 0.5 prior spreads random scores over 0-1 so the decoding has something to keep.
        with torch.no_grad():
            for layer in (*model.head.obj_preds, *model.head.cls_preds):
                layer.bias.zero_()
    entries = {}
    for raw, file_name in ((True, "yolox-nano-shapes-raw.onnx"), (False, "yolox-nano-shapes-decoded.onnx")):
        path = export_yolox(model, out / file_name, decode=not raw)
        demo, torch_path, counts, counts_postprocess = yolox_expected(path, raw)
        entries[file_name] = {
            "family": "yolox",
            **io_of(path),
            "settings": {
                "reference": "yolox 0.3.0 demo/ONNXRuntime/onnx_inference.py pipeline: preproc, "
                + ("demo_postprocess, " if raw else "")
                + "score = obj * cls, cxcywh -> xyxy, / ratio, multiclass_nms(class_agnostic=True)",
                "decode_in_inference": not raw,
                "input_size": list(YOLOX_SIZE),
                "score_thr": YOLOX_SCORE,
                "score_rule_images": "max over classes of obj*cls > score_thr (multiclass_nms_class_agnostic)",
                "nms_thr": YOLOX_NMS,
                "nms_images": "class-agnostic greedy NMS in numpy, IoU with +1 pixel widths/heights, "
                "suppress IoU > nms_thr",
                "images_postprocess": "yolox.utils.postprocess(decoded, 3, score_thr, nms_thr) (class-aware "
                "torchvision batched_nms on obj*cls, keep obj*cls >= score_thr), boxes / ratio; score = obj*cls; "
                "torchvision nms here is make_fixtures.ensure_torchvision()'s op (the PyPI torchvision _C "
                "cannot load next to CPU torch)",
                "preprocess": "cv2 BGR uint8, r = min(416/h, 416/w), cv2.resize to (int(w*r), int(h*r)) "
                "INTER_LINEAR, pasted at the top-left of a 114-filled 416x416 canvas, HWC->CHW float32, "
                "BGR kept, 0-255 (no /255, no mean/std)",
                "postprocess": "boxes / r, no clipping",
                "kept_in_expected": f"the first {YOLOX_KEEP} detections per image, in yolox's order (score "
                "descending); *_count holds how many yolox returned",
            },
            "training": {"steps": steps, "batch": 8, "seconds": round(train_s, 1),
                         "loss_first_20": round(float(np.mean(losses[:20])), 3) if losses else None,
                         "loss_last_20": round(float(np.mean(losses[-20:])), 3) if losses else None}
            if steps else {"random_weights": True, "batchnorm_reestimated": True,
                           "obj_and_cls_biases": "0 (prior 0.5) instead of get_model()'s 1e-2 prior"},
            "images": demo,
            "images_count": counts,
            "images_postprocess": torch_path,
            "images_postprocess_count": counts_postprocess,
        }
    return entries


# ----------------------------------------------------------------------------------------------------------
# 3. torchvision classifier
# ----------------------------------------------------------------------------------------------------------


def build_torchvision(out: Path) -> dict[str, Any]:
    import onnxruntime as ort
    import torch
    import torchvision.transforms as T
    from PIL import Image
    from torchvision.models import MobileNet_V3_Small_Weights, mobilenet_v3_small

    seed_everything()
    model = mobilenet_v3_small(weights=None, num_classes=len(NAMES), width_mult=0.5)
    # torchvision's own ImageNet eval preset for this architecture (an object only: nothing is downloaded).
    preset = MobileNet_V3_Small_Weights.IMAGENET1K_V1.transforms()
    compose = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                         T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    scenes = [Image.fromarray(cv2.cvtColor(s, cv2.COLOR_BGR2RGB)) for s in calibration_scenes(16)]
    reestimate_batchnorm(model, [torch.stack([preset(s) for s in scenes[i : i + 4]]) for i in range(0, 16, 4)])
    # Random logits are nearly equal; widen the last layer so the probabilities differ clearly between images.
    with torch.no_grad():
        logits = model(torch.stack([preset(s) for s in scenes]))
        model.classifier[-1].weight.mul_(2.0 / float(logits.std()))
        model.classifier[-1].bias.zero_()
    path = out / "torchvision-mobilenet_v3_small.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 224, 224), str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17, dynamo=False)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images, compose_gap, torch_gap = {}, 0.0, 0.0
    for name in CLASSIFY_IMAGES:
        image = Image.open(IMAGES / name).convert("RGB")
        tensor = preset(image)[None].numpy()
        compose_gap = max(compose_gap, float(np.abs(compose(image)[None].numpy() - tensor).max()))
        logits = session.run(None, {"input": tensor})[0][0].astype(np.float64)
        with torch.no_grad():
            torch_gap = max(torch_gap, float(np.abs(model(torch.from_numpy(tensor))[0].numpy() - logits).max()))
        probabilities = np.exp(logits - logits.max())
        images[name] = [float(p) for p in probabilities / probabilities.sum()]
    return {
        "family": "torchvision-classifier",
        **io_of(path),
        "names": NAMES,
        "settings": {
            "reference": "torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1.transforms() (ImageClassification) on "
            "the PIL RGB image, onnxruntime, softmax in float64",
            "preprocess": "PIL RGB; Resize(256): shorter side to 256, longer side int(256*long/short) (truncated), "
            "bilinear, antialias; CenterCrop(224) (offsets round((H-224)/2)); /255; Normalize mean (0.485, 0.456, "
            "0.406) std (0.229, 0.224, 0.225); NCHW float32",
            "postprocess": "softmax over the 3 logits",
            "max_abs_diff_vs_explicit_compose": compose_gap,
            "max_abs_logit_diff_onnx_vs_torch": torch_gap,
        },
        "training": {"random_weights": True, "batchnorm_reestimated": True,
                     "last_layer": "weights scaled so logits have std 2 on the calibration scenes, bias 0"},
        "images": images,
    }


def roboflow_vit_tensor(image_bgr: np.ndarray, size: int) -> np.ndarray:
    """The reference server's legacy pre-processing for a `vit` classifier whose environment.json says
    "Stretch to": cv2 bilinear resize of float32 BGR pixels, BGR -> RGB, /255, mean = std = 0.5, NCHW."""
    resized = cv2.resize(image_bgr.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    return ((resized[:, :, ::-1] / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None].astype(np.float32)


def build_vit(out: Path) -> dict[str, dict[str, Any]]:
    """A tiny torchvision ViT exported twice: plain logits (single-label) and with a sigmoid at the end (a genuine
    multi-label classifier's output), with torch's own probabilities on the reference's `vit` pre-processing."""
    import onnxruntime as ort
    import torch
    from torchvision.models import VisionTransformer

    seed_everything()
    model = VisionTransformer(image_size=VIT_SIZE, patch_size=32, num_layers=1, num_heads=2, hidden_dim=32,
                              mlp_dim=64, num_classes=len(NAMES)).eval()
    scenes = torch.from_numpy(np.concatenate([roboflow_vit_tensor(s, VIT_SIZE) for s in calibration_scenes(16)]))
    with torch.no_grad():  # random heads start at zero (torchvision): random weights, logits of std 2
        model.heads.head.weight.normal_()
        model.heads.head.weight.mul_(2.0 / float(model(scenes).std()))
    variants = {"torchvision-vit-tiny.onnx": (model, "softmax"),
                "torchvision-vit-tiny-sigmoid.onnx": (torch.nn.Sequential(model, torch.nn.Sigmoid()).eval(), "sigmoid")}
    entries = {}
    for file, (network, activation) in variants.items():
        path = out / file
        torch.onnx.export(network, scenes[:1], str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17, dynamo=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        images, onnx_gap = {}, 0.0
        for name in CLASSIFY_IMAGES:
            tensor = roboflow_vit_tensor(cv2.imread(str(IMAGES / name)), VIT_SIZE)
            with torch.no_grad():
                scores = network(torch.from_numpy(tensor))[0].double()
            onnx_gap = max(onnx_gap, float(np.abs(session.run(None, {"input": tensor})[0][0] - scores.numpy()).max()))
            images[name] = (scores.softmax(0) if activation == "softmax" else scores).tolist()
        entries[file] = {
            "family": "torchvision-vit",
            **io_of(path),
            "names": NAMES,
            "settings": {
                "reference": f"torch forward of the exported module, then {activation} (float64)" if activation ==
                "softmax" else "torch forward of the exported module (its last layer is the sigmoid)",
                "preprocess": "the reference server's `vit` legacy path with PREPROCESSING resize 'Stretch to' "
                f"{VIT_SIZE}x{VIT_SIZE}: cv2.imread BGR, cv2.resize on float32 (INTER_LINEAR), BGR->RGB, /255, "
                "(x - 0.5) / 0.5, NCHW",
                "max_abs_diff_onnx_vs_torch": onnx_gap,
            },
            "training": {"random_weights": True, "head": "normal weights scaled so logits have std 2 on scenes"},
            "images": images,
        }
    return entries


# ----------------------------------------------------------------------------------------------------------
# 4. Ultralytics classify probabilities for the committed shapes-classify.onnx
# ----------------------------------------------------------------------------------------------------------


def build_ultralytics_classify() -> dict[str, Any]:
    import ast

    from ultralytics import YOLO

    info = io_of(SHAPES_CLASSIFY)
    imgsz = ast.literal_eval(info["metadata"]["imgsz"])
    model = YOLO(str(SHAPES_CLASSIFY), task="classify")
    images = {}
    for name in CLASSIFY_IMAGES + ["detect_5.jpg"]:
        result = model.predict(str(IMAGES / name), imgsz=imgsz, verbose=False)[0]
        images[name] = [float(p) for p in result.probs.data.cpu().numpy()]
    return {
        "family": "ultralytics-classify",
        "file": "tests/fixtures/models/shapes-classify.onnx",
        **info,
        "settings": {
            "reference": "ultralytics YOLO('shapes-classify.onnx', task='classify').predict(path, imgsz)",
            "imgsz": imgsz,
            "preprocess": f"cv2 BGR -> PIL (channel order untouched) -> torchvision Resize({imgsz[0]}) (shorter side to "
            f"{imgsz[0]}, longer side truncated, InterpolationMode.BILINEAR, PIL so antialiased) -> "
            f"CenterCrop({imgsz[0]}) -> uint8 "
            "-> BGR to RGB -> /255; Normalize mean (0,0,0) std (1,1,1) (no-op)",
            "postprocess": "none: the graph output is already softmax; probabilities as returned",
        },
        "images": images,
    }


# ----------------------------------------------------------------------------------------------------------
# 5. Ultralytics detect, dynamic=True nms=True, batch 1
# ----------------------------------------------------------------------------------------------------------


def build_dynamic_nms(out: Path, epochs: int) -> dict[str, Any]:
    import onnxruntime as ort
    from ultralytics import YOLO

    seed_everything()
    since = time.perf_counter()
    recipe = mf.RECIPES[0]
    best, metrics = mf.train(recipe, shapes_data(), WORK / "cfg", WORK / "runs", epochs, None)
    train_s = time.perf_counter() - since
    path = mf.export(best, out / "shapes-detect-dynamic-nms.onnx", dynamic=True, nms=True)

    predictor = YOLO(str(path), task="detect")
    images = {}
    for name in ("detect_0.jpg", "detect_1.jpg"):
        images[name] = ultralytics_detections(predictor.predict(str(IMAGES / name), imgsz=mf.TRAIN_IMGSZ,
                                                                verbose=False)[0])

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pair = ["detect_0.jpg", "detect_1.jpg"]
    tensors = [mf.letterbox(cv2.imread(str(IMAGES / n)), (160, 160))[0] for n in pair]
    alone = [session.run(None, {"images": t})[0][0] for t in tensors]
    together = session.run(None, {"images": np.concatenate(tensors)})[0]
    batch = {
        "images": pair,
        "input_shape": [2, 3, 160, 160],
        "output_shape": list(together.shape),
        "rows_with_score_gt_0_alone": [int((a[:, 4] > 0).sum()) for a in alone],
        "rows_with_score_gt_0_in_batch": [int((together[i][:, 4] > 0).sum()) for i in range(2)],
        "first_image_rows_equal_alone": bool(np.allclose(together[0], alone[0], atol=1e-4)),
        "second_image_lost": bool((together[1][:, 4] > 0).sum() == 0 and (alone[1][:, 4] > 0).sum() > 0),
    }
    return {
        "family": "ultralytics-detect-nms-dynamic",
        **io_of(path),
        "names": NAMES,
        "settings": {
            "reference": "ultralytics YOLO('shapes-detect-dynamic-nms.onnx', task='detect').predict(path, imgsz=160)",
            "conf": 0.25, "iou": 0.7, "max_det": 300, "imgsz": mf.TRAIN_IMGSZ,
            "nms": "inside the graph (ONNX NonMaxSuppression, conf 0.25, iou 0.7 baked in at export)",
            "preprocess": "Ultralytics LetterBox to 160 (INTER_LINEAR, centred 114 pad; dynamic ONNX lets the "
            "predictor use the minimal stride-32 rectangle for non-square images), BGR->RGB, /255",
            "postprocess": "rows [x1, y1, x2, y2, score, class] in letterboxed pixels; rows with score > conf; "
            "subtract pad, divide by gain, clip to the image",
        },
        "training": {"recipe": "make_fixtures RECIPES[0] (shapes-detect)", "epochs": epochs,
                     "seconds": round(train_s, 1), "ultralytics_val": metrics},
        "batch_of_two_onnxruntime": batch,
        "images": images,
    }


# ----------------------------------------------------------------------------------------------------------
# 6. YOLO26 semantic segmentation and depth
# ----------------------------------------------------------------------------------------------------------


def build_yolo26(out: Path) -> dict[str, Any]:
    import torch
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.utils import YAML

    entries = {}
    bundled = Path(ultralytics.__file__).parent / "cfg" / "models" / "26"
    for kind, task in (("sem", "semantic"), ("depth", "depth")):
        cfg = YAML.load(bundled / f"yolo26-{kind}.yaml")
        depth = cfg["scales"]["n"][0]
        cfg["scales"] = {"t": [depth, 0.125, 256]}
        if kind == "sem":
            cfg["nc"] = len(NAMES)
        else:
            cfg["head"][-1][3] = [32]  # Depth's c_mid is not width-scaled: 256 would make an 11 MB file
        seed_everything()
        model = YOLO(str(ultralytics_yaml(f"yolo26-{kind}-tiny", cfg)), task=task)
        if kind == "sem":
            model.model.names = dict(enumerate(NAMES))
        scenes = calibration_scenes(8)
        batches = [torch.from_numpy(np.concatenate([mf.letterbox(s, (160, 160))[0] for s in scenes[i : i + 4]]))
                   for i in range(0, 8, 4)]
        reestimate_batchnorm(model.model, batches)
        file_name = f"yolo26-{kind}-tiny.onnx"
        path = move_export(model.export(format="onnx", imgsz=mf.TRAIN_IMGSZ, simplify=True), out / file_name)
        predictor = YOLO(str(path), task=task)
        images = {}
        for name in DETECT_IMAGES:
            result = predictor.predict(str(IMAGES / name), imgsz=mf.TRAIN_IMGSZ, verbose=False)[0]
            if kind == "sem":
                mask = result.semantic_mask.data.cpu().numpy()
                images[name] = {"shape": list(mask.shape),
                                "class_pixel_counts": np.bincount(mask.ravel(), minlength=len(NAMES)).tolist()}
            else:
                depth_map = result.depth.data.cpu().numpy().astype(np.float64)
                images[name] = {"shape": list(depth_map.shape), "min": depth_map.min(), "max": depth_map.max(),
                                "mean": depth_map.mean()}
        entries[file_name] = {
            "family": f"ultralytics-yolo26-{task}",
            **io_of(path),
            "settings": {
                "reference": f"ultralytics YOLO('{file_name}', task='{task}').predict(path, imgsz=160)",
                "imgsz": mf.TRAIN_IMGSZ,
                "yaml": f"ultralytics/cfg/models/26/yolo26-{kind}.yaml",
                "scale": "depth as n, width 0.125, max channels 256" + ("" if kind == "sem" else ", Depth c_mid 32"),
                "preprocess": "LetterBox to 160 (centred, 114 pad), BGR->RGB, /255" if kind == "sem"
                else "stretch to 160x160 (scale_fill, INTER_LINEAR), BGR->RGB, /255",
                "postprocess": "output is the uint8 class map (in-graph bilinear x8 upsample of the logits, then "
                "ArgMax); crop the letterbox pad, nearest resize to the original size" if kind == "sem"
                else "output is positive depth (exp of clamped log-depth, calibrated, in-graph bilinear x4 "
                "align_corners=True); bilinear align_corners=True resize to the original size",
            },
            "training": {"random_weights": True, "batchnorm_reestimated": True},
            "images": images,
            "images_note": "summaries of Ultralytics' own result maps at the original image size",
        }
    return entries


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PINNED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_readme(out: Path, expected: dict[str, Any], run: dict[str, Any]) -> None:
    rows = []
    for name, entry in expected.items():
        if not name.endswith(".onnx") or "file" in entry:
            continue
        outputs = ", ".join(f"`{o['name']}` {o['shape']}" for o in entry["outputs"])
        meta = entry["metadata"]
        head = f"task `{meta['task']}`, head `{meta['head']}`" if "task" in meta else "no metadata"
        rows.append(f"| `{name}` | {entry['family']} | `{entry['input']['name']}` {entry['input']['shape']} | "
                    f"{outputs} | {head} | {entry['size'] / 1e6:.2f} MB |")
    timings = ", ".join(f"{k} {v} s" for k, v in run["timings_s"].items())
    text = f"""# Model-family ONNX fixtures

Made by `tools/make_family_fixtures.py` (`make family-fixtures`), offline, seeded, each model by its own package.
`expected.json` holds, per file, the input, outputs, ONNX metadata, the settings of the reference run and that
package's own answers on the images in `tests/fixtures/images/`. Do not edit by hand: rerun the script.

| file | family | input | outputs | metadata | size |
|---|---|---|---|---|---|
{chr(10).join(rows)}

- **rtdetr-shapes.onnx**: Ultralytics RT-DETR from a custom yaml (yolov8 backbone/neck at width 0.125,
  `RTDETRDecoder` hidden 64, 300 queries, 3 decoder layers), trained {run['rtdetr_training']} on the synthetic
  shapes at imgsz 160, exported
  by Ultralytics. Output rows are `[cx, cy, w, h, score, class]`, boxes normalised 0-1, already top-k'd over
  queries x classes (sigmoid scores). Expected: `RTDETR(file).predict(image, conf={RTDETR_CONF}, imgsz=160)`:
  stretch to 160x160 (no letterbox), keep score > conf, boxes x original width/height, no NMS, no clipping.
- **yolox-nano-shapes-raw.onnx / -decoded.onnx**: pip `yolox` 0.3.0 yolox-nano (`get_exp(None, "yolox-nano")`,
  num_classes 3), random weights (BatchNorm re-estimated on shapes scenes, objectness/class biases 0 so scores
  spread over 0-1; `--yolox-steps N` trains briefly instead), exported as yolox's `tools/export_onnx.py` does (its SiLU,
  opset 11, `images` -> `output`), with `decode_in_inference` False (raw: xy offsets and log wh per grid cell,
  strides 8/16/32, obj and class already sigmoid) and True (decoded to input pixels). Expected (`images`): yolox's
  ONNXRuntime demo: `preproc` (BGR 0-255, resize by r = min(416/h, 416/w), top-left placement on 114 grey),
  `demo_postprocess` for the raw file, score = obj x cls, `multiclass_nms` (class-agnostic, IoU with +1 px) at
  score {YOLOX_SCORE} / NMS {YOLOX_NMS}, boxes / r. `images_postprocess`: `yolox.utils.postprocess` (class-aware).
  Random boxes survive by the thousand: only the first {YOLOX_KEEP} per image are kept (`images_count` has the total).
- **torchvision-mobilenet_v3_small.onnx**: `mobilenet_v3_small(weights=None, num_classes=3, width_mult=0.5)`,
  random weights, BatchNorm statistics re-estimated on shapes scenes, last layer widened; `torch.onnx.export`
  (`input` [batch,3,224,224] -> `output` logits). Expected: torchvision's ImageNet eval preset (Resize 256 bilinear
  antialiased, CenterCrop 224, /255, ImageNet mean/std) + onnxruntime + softmax.
- **torchvision-vit-tiny.onnx / -sigmoid.onnx**: torchvision `VisionTransformer(image_size=224, patch_size=32,
  num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=3)`, random weights (head scaled to logits of
  std 2), exported with plain logits and with `nn.Sigmoid()` appended (a multi-label classifier's output).
  Expected: the reference server's `vit` pre-processing (cv2 float32 stretch to 224, RGB, /255, mean = std = 0.5),
  torch forward, softmax (logits file) or the sigmoid outputs as they are.
- **shapes-detect-dynamic-nms.onnx**: make_fixtures' shapes detector retrained for {run['detect_epochs']} epochs, exported with
  `dynamic=True, nms=True` (batch 1). Expected: Ultralytics' predictor per image; `batch_of_two_onnxruntime` shows
  what a batch of two returns.
- **yolo26-sem-tiny.onnx / yolo26-depth-tiny.onnx**: bundled `yolo26-sem.yaml` (nc 3) and `yolo26-depth.yaml` at
  width 0.125, random weights with BatchNorm re-estimated, exported at 160. Layout/metadata fixtures only.
- `expected.json["shapes-classify.onnx"]`: Ultralytics' classify predictor on the committed
  `tests/fixtures/models/shapes-classify.onnx` (not copied here).

Generated {run['finished']} in {run['seconds']:.0f} s on {run['cpus']} CPU cores ({timings}).
Versions: {", ".join(f"{k} {v}" for k, v in run['versions'].items())}. torchvision ops: {run['torchvision']}.
"""
    readme = out / "README.md"
    kept = readme.read_text() if readme.exists() else ""
    if SEMANTIC_README_BLOCK in kept:  # tools/make_semantic_fixtures.py's section, kept as it wrote it
        text += "\n" + kept[kept.index(SEMANTIC_README_BLOCK) :]
    readme.write_text(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", default=",".join(FAMILIES), help="comma list of " + ", ".join(FAMILIES))
    parser.add_argument("--rtdetr-epochs", type=int, default=RTDETR_EPOCHS, help="0: random weights")
    parser.add_argument("--rtdetr-weights", type=Path, help="best.pt of an earlier run of the same recipe")
    parser.add_argument("--yolox-steps", type=int, default=YOLOX_STEPS, help="0: random weights")
    parser.add_argument("--detect-epochs", type=int, default=DETECT_EPOCHS)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    import os

    args = parse_args(argv)
    only = set(args.only.split(","))
    timer = mf.Timer()
    shutil.rmtree(WORK / "runs", ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    mf.configure_offline(WORK)
    torchvision_mode = mf.ensure_torchvision()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    args.out.mkdir(parents=True, exist_ok=True)
    expected_path = args.out / "expected.json"
    expected = json.loads(expected_path.read_text()) if expected_path.exists() else {}
    steps = json.loads((args.out / "timings.json").read_text()) if (args.out / "timings.json").exists() else {}

    def step(family: str, build: Any) -> None:
        if family not in only:
            return
        since = time.perf_counter()
        entries = build()
        expected.update(entries)
        timer.step(family, since)
        steps[family] = timer.steps[family]
        expected_path.write_text(json.dumps(dict(sorted(expected.items())), indent=1) + "\n")

    step("rtdetr", lambda: {"rtdetr-shapes.onnx": build_rtdetr(args.out, args.rtdetr_epochs, args.rtdetr_weights)})
    step("yolox", lambda: build_yolox(args.out, args.yolox_steps))
    step("torchvision", lambda: {"torchvision-mobilenet_v3_small.onnx": build_torchvision(args.out)})
    step("vit", lambda: build_vit(args.out))
    step("ultralytics-classify", lambda: {"shapes-classify.onnx": build_ultralytics_classify()})
    step("dynamic-nms", lambda: {"shapes-detect-dynamic-nms.onnx": build_dynamic_nms(args.out, args.detect_epochs)})
    step("yolo26", lambda: build_yolo26(args.out))

    (args.out / "timings.json").write_text(json.dumps(steps, indent=1) + "\n")
    run = {
        "seconds": sum(steps.values()),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "versions": versions(),
        "torchvision": torchvision_mode,
        "cpus": os.cpu_count(),
        "timings_s": steps,
        "detect_epochs": args.detect_epochs,
        "rtdetr_training": expected.get("rtdetr-shapes.onnx", {}).get("training", {}).get("weights", "?"),
    }
    write_readme(args.out, expected, run)
    print(f"done in {time.perf_counter() - timer.start:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
