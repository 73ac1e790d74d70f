"""Build visionserve's Ultralytics YOLO ONNX test fixtures offline, from scratch.

Every model is a genuine Ultralytics model built from a yaml bundled in the `ultralytics` wheel (with a
smaller width than the `n` scale), trained briefly on CPU on a synthetic "shapes" data set that this script
draws, and exported with Ultralytics' own ONNX exporter. Nothing is downloaded: no weights, no fonts, no data.
The only model not written by Ultralytics is `shapes-detect-v5classic.onnx`, made by ONNX graph surgery on
`shapes-detect.onnx` to get the classic YOLOv5 `[B, N, 5+nc]` layout. At the end every model is run with plain
onnxruntime + numpy on the test images and the results go into verify.json and README.md.

Set up the venv (CPU torch; pin torchvision so pip does not pull a CUDA torch):

    python3.11 -m venv .venv-fixtures
    .venv-fixtures/bin/pip install torch==2.13.0
    .venv-fixtures/bin/pip install ultralytics==8.4.190 torchvision==0.28.0 onnx onnxslim onnxruntime

Run (about 11 minutes on 2 CPU cores; scratch goes to $FIXTURES_WORK, default /tmp/fixtures-work):

    .venv-fixtures/bin/python tools/make_fixtures.py tests/fixtures [--no-train] [--epochs-scale F]

`--no-train` exports random-weight models (same layouts and metadata, useless predictions) in under a minute.
`--epochs-scale F` multiplies every epoch count (at least 1 epoch each).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SEED = 0
WORK_DIR = Path(os.environ.get("FIXTURES_WORK", "/tmp/fixtures-work"))
TRAIN_IMGSZ = 160  # models are trained and exported at 160; the 320 px images are letterboxed down
SCENE_SIZE = 320
DEPTH_WIDTH_CHANNELS = (0.125, 256)  # width multiple and max channels (yolov8n: 0.25 and 1024); depth as `n`
CONF, IOU, MAX_DET = 0.25, 0.7, 300  # Ultralytics predict defaults
MATCH_IOU = 0.5
HELDOUT_IMAGES = 30

NAMES = {
    "detect": ["circle", "square", "triangle"],
    "segment": ["circle", "square", "triangle"],
    "pose": ["triangle"],
    "obb": ["rectangle", "square"],
    "classify": ["circle", "square", "triangle"],
}
KPT_NAMES = ["apex", "bottom_left", "bottom_right"]
TRAIN_COUNTS = {"train": 384, "val": 32}
TEST_IMAGES = {"detect": 4, "segment": 3, "pose": 3, "obb": 3, "classify": 4}
NONSQUARE_DETECT = [(480, 320), (320, 480)]  # (width, height)

# The train/val/test splits and each task draw from their own seeds, so test images never appear in training.
SEED_TAGS = {"train": 1, "val": 2, "test": 3, "heldout": 4}
TASK_TAGS = {"detect": 1, "segment": 2, "pose": 3, "obb": 4, "classify": 5}


@dataclass(frozen=True)
class Recipe:
    """One trained model: the bundled yaml it is built from, its data and how long it trains."""

    name: str
    yaml: str  # path inside ultralytics/cfg/models
    task: str
    epochs: int
    overrides: dict[str, Any] = field(default_factory=dict)  # extra Ultralytics train arguments


RECIPES = [
    Recipe("shapes-detect", "v8/yolov8.yaml", "detect", 24),
    Recipe("shapes-segment", "v8/yolov8-seg.yaml", "segment", 20),
    Recipe("shapes-pose", "v8/yolov8-pose.yaml", "pose", 16),
    Recipe("shapes-obb", "v8/yolov8-obb.yaml", "obb", 20),
    Recipe("shapes-detect-yolo11", "11/yolo11.yaml", "detect", 24),
    Recipe("shapes-detect-v5u", "v5/yolov5.yaml", "detect", 16),
    # Classify starts from shapes-detect's backbone. RandAugment, random erasing and small random crops (which
    # cut the one shape out of the picture) stop this small model from learning in a few epochs.
    Recipe(
        "shapes-classify",
        "v8/yolov8-cls.yaml",
        "classify",
        12,
        {"auto_augment": None, "erasing": 0.0, "scale": 0.2},
    ),
]


# ----------------------------------------------------------------------------------------------------------
# Environment: offline Ultralytics and the torchvision CPU shim
# ----------------------------------------------------------------------------------------------------------


def configure_offline(work: Path) -> None:
    """Stop all Ultralytics network calls: offline mode, private settings dir, local font, no pip installs."""
    config_dir = work / "yolo-config"
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    shutil.copyfile(font, font_dir / "Arial.ttf")
    os.environ.update(
        YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_CONFIG_DIR=str(config_dir), YOLO_VERBOSE="0"
    )


_TORCHVISION_SHIM: list[Any] = []  # keeps the torch.library registration alive


def ensure_torchvision() -> str:
    """Make `import torchvision` work next to the CPU torch.

    PyPI's torchvision 0.28.0 is a CUDA build whose `_C.so` cannot load next to CPU torch, and its import
    then fails on `torchvision::nms`. In that case, define the two NMS ops with Ultralytics' pure-torch NMS.
    """
    import importlib.util

    import torch

    package_dir = Path(importlib.util.find_spec("torchvision").origin).parent
    try:
        torch.ops.load_library(str(next(package_dir.glob("_C*.so"))))
        return "native"
    except (OSError, StopIteration):
        pass
    from ultralytics.utils.nms import TorchNMS

    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.impl(op, TorchNMS.nms, "CPU")
    _TORCHVISION_SHIM.append(library)
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True
    return "shim (pure-torch nms)"


# ----------------------------------------------------------------------------------------------------------
# Synthetic shapes
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Shape:
    """One drawn object. `points` is the outline polygon (circle: 48 points) in image pixels."""

    name: str
    center: np.ndarray
    points: np.ndarray
    angle: float = 0.0  # obb: direction of the long side (radians)
    radius: float = 0.0  # circle only
    labelled: bool = True  # pose distractors are drawn but not labelled

    @property
    def box(self) -> np.ndarray:
        return np.concatenate([self.points.min(0), self.points.max(0)])

    @property
    def reach(self) -> float:
        return float(np.linalg.norm(self.points - self.center, axis=1).max())


def rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def circle(center: np.ndarray, size: float) -> Shape:
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    points = center + size * np.stack([np.cos(t), np.sin(t)], 1)
    return Shape("circle", center, points, radius=size)


def rectangle(name: str, center: np.ndarray, half_long: float, half_short: float, theta: float) -> Shape:
    corners = np.array(
        [
            [half_long, half_short],
            [-half_long, half_short],
            [-half_long, -half_short],
            [half_long, -half_short],
        ]
    )
    return Shape(name, center, center + corners @ rotation(theta).T, angle=theta)


def triangle(center: np.ndarray, size: float, tilt: float) -> Shape:
    """Equilateral triangle, apex up (tilt within +-25 deg); vertices: apex, bottom-left, bottom-right."""
    angles = np.deg2rad([-90.0, 150.0, 30.0]) + tilt  # image y points down
    points = center + 1.15 * size * np.stack([np.cos(angles), np.sin(angles)], 1)
    return Shape("triangle", center, points)


def random_shape(rng: np.random.Generator, name: str, center: np.ndarray, size: float) -> Shape:
    if name == "circle":
        return circle(center, size)
    if name == "triangle":
        return triangle(center, size, rng.uniform(-1, 1) * np.deg2rad(25))
    if name == "square":
        return rectangle("square", center, 0.9 * size, 0.9 * size, rng.uniform(0, np.pi / 2))
    aspect = rng.uniform(2.0, 3.5)  # obb rectangle
    return rectangle("rectangle", center, 1.3 * size, 1.3 * size / aspect, rng.uniform(0, np.pi))


def background(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A random two-colour linear gradient (float image) and its two end colours."""
    colours = rng.uniform(0, 255, (2, 3))
    phi = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:height, 0:width]
    t = x * np.cos(phi) + y * np.sin(phi)
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    return colours[0] * (1 - t[..., None]) + colours[1] * t[..., None], colours


def contrasting_colour(rng: np.random.Generator, against: np.ndarray) -> tuple[float, float, float]:
    for _ in range(100):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(against - colour, axis=1).min() > 120:
            break
    return tuple(float(c) for c in colour)


def draw(image: np.ndarray, shape: Shape, colour: tuple[float, float, float]) -> None:
    """Anti-aliased fill with 4 bits of sub-pixel precision."""
    if shape.name == "circle":
        cx, cy = np.round(shape.center * 16).astype(int)
        cv2.circle(image, (int(cx), int(cy)), round(shape.radius * 16), colour, -1, cv2.LINE_AA, shift=4)
    else:
        cv2.fillPoly(image, [np.round(shape.points * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)


def place(
    rng: np.random.Generator, kinds: list[str], sizes: tuple[float, float], width: int, height: int
) -> list[Shape]:
    """Put shapes of the given kinds at random, fully inside the image and not touching each other."""
    shapes: list[Shape] = []
    for kind in kinds:
        for _ in range(100):
            centre = rng.uniform([0, 0], [width, height])
            shape = random_shape(rng, kind, centre, rng.uniform(*sizes))
            inside = np.all(shape.points >= 2) and np.all(shape.points <= [width - 3, height - 3])
            apart = all(np.linalg.norm(s.center - centre) > s.reach + shape.reach + 4 for s in shapes)
            if inside and apart:
                shapes.append(shape)
                break
    return shapes


def scene_kinds(rng: np.random.Generator, task: str) -> list[str]:
    """Which shapes to draw. Pose scenes start with a triangle; circles and squares there are distractors."""
    count = int(rng.integers(1, 5))
    if task == "pose":
        return ["triangle"] + list(rng.choice(["triangle", "circle", "square"], count - 1, p=[0.6, 0.2, 0.2]))
    return list(rng.choice(NAMES[task], count))


def make_scene(
    rng: np.random.Generator, task: str, width: int, height: int, kind: str | None = None
) -> tuple[np.ndarray, list[Shape]]:
    """Draw one image (BGR uint8). Classify scenes hold one large shape of `kind` (random if None)."""
    image, colours = background(rng, width, height)
    if task == "classify":
        side = min(width, height)
        shapes = place(rng, [kind or str(rng.choice(NAMES[task]))], (0.18 * side, 0.36 * side), width, height)
    else:
        scale = min(width, height) / SCENE_SIZE
        sizes = (20 * scale, 48 * scale) if task == "obb" else (16 * scale, 48 * scale)
        shapes = place(rng, scene_kinds(rng, task), sizes, width, height)
    for shape in shapes:
        draw(image, shape, contrasting_colour(rng, colours))
        shape.labelled = task != "pose" or shape.name == "triangle"
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), [s for s in shapes if s.labelled]


def scene_rng(split: str, task: str, index: int) -> np.random.Generator:
    return np.random.default_rng([SEED, SEED_TAGS[split], TASK_TAGS[task], index])


# ----------------------------------------------------------------------------------------------------------
# Training data sets (Ultralytics formats)
# ----------------------------------------------------------------------------------------------------------


def label_line(task: str, shape: Shape, width: int, height: int) -> str:
    """One YOLO label row, coordinates normalised to the image size."""
    norm = np.array([width, height], float)
    cls = NAMES[task].index(shape.name)
    box = shape.box
    xywh = np.concatenate([(box[:2] + box[2:]) / 2, box[2:] - box[:2]]) / np.tile(norm, 2)
    if task == "detect":
        values = xywh
    elif task in ("segment", "obb"):
        values = (shape.points / norm).ravel()
    else:  # pose: box then (x, y, visible) per keypoint
        values = np.concatenate([xywh, np.column_stack([shape.points / norm, np.full(3, 2.0)]).ravel()])
    return " ".join([str(cls)] + [f"{v:.6f}" for v in values])


def write_detection_dataset(task: str, root: Path) -> Path:
    """Images + labels for detect/segment/pose/obb and the data yaml Ultralytics trains from."""
    for split, count in TRAIN_COUNTS.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, shapes = make_scene(scene_rng(split, task, i), task, SCENE_SIZE, SCENE_SIZE)
            cv2.imwrite(str(root / "images" / split / f"{i:04d}.png"), image)
            lines = [label_line(task, s, SCENE_SIZE, SCENE_SIZE) for s in shapes]
            (root / "labels" / split / f"{i:04d}.txt").write_text("".join(line + "\n" for line in lines))
    data: dict[str, Any] = {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(NAMES[task])),
    }
    if task == "pose":
        data.update(kpt_shape=[3, 3], flip_idx=[0, 2, 1], kpt_names={0: KPT_NAMES})
    from ultralytics.utils import YAML

    data_yaml = root / "data.yaml"
    YAML.save(data_yaml, data)  # real YAML: integer keys stay integers in the exported names/kpt_names
    return data_yaml


def write_classify_dataset(root: Path) -> Path:
    """ImageFolder layout: <split>/<class>/<n>.png, one large shape per image, classes in turn."""
    names = NAMES["classify"]
    for split, count in TRAIN_COUNTS.items():
        for i in range(count):
            kind = names[i % len(names)]
            image, _ = make_scene(scene_rng(split, "classify", i), "classify", SCENE_SIZE, SCENE_SIZE, kind)
            (root / split / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / kind / f"{i:04d}.png"), image)
    return root


# ----------------------------------------------------------------------------------------------------------
# Models: small yamls, training, export
# ----------------------------------------------------------------------------------------------------------


def small_model_yaml(recipe: Recipe, out_dir: Path) -> Path:
    """Copy a bundled yaml with one custom scale: depth of `n`, width 0.125, max channels 256."""
    import ultralytics
    from ultralytics.utils import YAML

    cfg = YAML.load(Path(ultralytics.__file__).parent / "cfg" / "models" / recipe.yaml)
    depth = cfg["scales"]["n"][0]
    width, max_channels = DEPTH_WIDTH_CHANNELS
    cfg["scales"] = {"t": [depth, width, max_channels]}
    cfg["nc"] = len(NAMES[recipe.task])
    if recipe.task == "pose":
        cfg["kpt_shape"] = [3, 3]
    path = out_dir / f"{recipe.name}.yaml"
    YAML.save(path, cfg)
    return path


def build_model(recipe: Recipe, cfg_dir: Path) -> Any:
    import torch
    from ultralytics import YOLO

    torch.manual_seed(SEED)  # random-weight builds (--no-train) are reproducible too
    return YOLO(str(small_model_yaml(recipe, cfg_dir)), task=recipe.task)


def train(
    recipe: Recipe, data: Path, cfg_dir: Path, runs: Path, epochs: int, pretrained: Path | None
) -> tuple[Path, dict[str, float]]:
    """Short CPU training run; returns best.pt and the final Ultralytics validation metrics."""
    model = build_model(recipe, cfg_dir)
    model.train(
        data=str(data),
        epochs=epochs,
        imgsz=TRAIN_IMGSZ,
        batch=8,
        nbs=8,
        workers=0,
        cache="ram",
        device="cpu",
        seed=SEED,
        val=False,
        plots=False,
        close_mosaic=max(epochs // 2, 1),
        warmup_epochs=0.5,
        project=str(runs),
        name=recipe.name,
        exist_ok=True,
        pretrained=str(pretrained) if pretrained else False,
        **recipe.overrides,
    )
    metrics = {k: round(float(v), 4) for k, v in model.trainer.metrics.items() if k.startswith("metrics/")}
    return Path(model.trainer.best), metrics


def export(model_or_weights: Any, destination: Path, **options: Any) -> Path:
    """Ultralytics ONNX export (default opset, onnxslim) at the training size, moved to `destination`."""
    from ultralytics import YOLO

    model = YOLO(str(model_or_weights)) if isinstance(model_or_weights, Path) else model_or_weights
    exported = Path(model.export(format="onnx", imgsz=TRAIN_IMGSZ, simplify=True, **options))
    shutil.move(exported, destination)
    return destination


def make_v5_classic(source: Path, destination: Path) -> None:
    """Rewrite `[B, 4+nc, N]` as the classic YOLOv5 `[B, N, 5+nc]`: cx,cy,w,h, objectness, class probs.

    objectness = max class score and class_prob = score / objectness, so objectness * class_prob is the
    original score. Tensor names and metadata_props stay exactly as Ultralytics wrote them.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 18, "ReduceMax with an axes input needs opset 18"
    graph = model.graph
    output = graph.output[0]
    name = output.name
    _, channels, anchors = (d.dim_value for d in output.type.tensor_type.shape.dim)
    for node in graph.node:
        node.output[:] = [f"{name}_ultralytics" if o == name else o for o in node.output]
        node.input[:] = [f"{name}_ultralytics" if i == name else i for i in node.input]
    constants = {
        "v5_zero": np.array([0], np.int64),
        "v5_four": np.array([4], np.int64),
        "v5_end": np.array([channels], np.int64),
        "v5_axis": np.array([2], np.int64),
        "v5_eps": np.array(1e-12, np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    graph.node.extend(
        [
            helper.make_node("Transpose", [f"{name}_ultralytics"], ["v5_rows"], perm=[0, 2, 1]),
            helper.make_node("Slice", ["v5_rows", "v5_zero", "v5_four", "v5_axis"], ["v5_box"]),
            helper.make_node("Slice", ["v5_rows", "v5_four", "v5_end", "v5_axis"], ["v5_scores"]),
            helper.make_node("ReduceMax", ["v5_scores", "v5_axis"], ["v5_obj"], keepdims=1),
            helper.make_node("Max", ["v5_obj", "v5_eps"], ["v5_obj_safe"]),
            helper.make_node("Div", ["v5_scores", "v5_obj_safe"], ["v5_cls"]),
            helper.make_node("Concat", ["v5_box", "v5_obj", "v5_cls"], [name], axis=2),
        ]
    )
    graph.output.remove(output)
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, anchors, channels + 1]))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(destination))


# ----------------------------------------------------------------------------------------------------------
# Test images and ground truth
# ----------------------------------------------------------------------------------------------------------


def truth_record(task: str, shape: Shape) -> dict[str, Any]:
    r = lambda a: np.round(np.asarray(a, float), 1).tolist()
    record: dict[str, Any] = {"class": shape.name, "box": r(shape.box)}
    if task == "segment":
        record["polygon"] = r(shape.points)
    elif task == "pose":
        record["keypoints"] = [[*r(p), 2] for p in shape.points]
    elif task == "obb":
        period = np.pi / 2 if shape.name == "square" else np.pi
        record["corners"] = r(shape.points)
        record["angle"] = round(float(shape.angle % period), 4)
    return record


def test_scenes(
    split: str, task: str, count: int
) -> Iterator[tuple[str, np.ndarray, list[Shape], str | None]]:
    """(file name, image, shapes, classify label) for the committed test set or the larger held-out set."""
    sizes = [(SCENE_SIZE, SCENE_SIZE)] * count
    if task == "detect" and split == "test":
        sizes += NONSQUARE_DETECT
    names = NAMES[task]
    for i, (width, height) in enumerate(sizes):
        label = names[i % len(names)] if task == "classify" else None
        image, shapes = make_scene(scene_rng(split, task, i), task, width, height, label)
        yield f"{task}_{i}.jpg", image, shapes, label


def write_test_images(images_dir: Path) -> dict[str, Any]:
    """JPEG test images (fresh seeds) and ground_truth.json."""
    images_dir.mkdir(parents=True, exist_ok=True)
    truth: dict[str, Any] = {}
    for task, count in TEST_IMAGES.items():
        for file_name, image, shapes, label in test_scenes("test", task, count):
            cv2.imwrite(str(images_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            entry: dict[str, Any] = {"task": task, "width": image.shape[1], "height": image.shape[0]}
            if task == "classify":
                entry["label"] = label
            else:
                entry["objects"] = [truth_record(task, s) for s in shapes]
            truth[file_name] = entry
    (images_dir / "ground_truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


# ----------------------------------------------------------------------------------------------------------
# Independent check: onnxruntime + numpy only
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Letterbox:
    gain: float
    left: int
    top: int
    width: int  # original image size
    height: int


@dataclass
class Prediction:
    cls: int
    score: float
    box: np.ndarray  # xyxy, original image pixels
    mask: np.ndarray | None = None  # bool, original image size
    keypoints: np.ndarray | None = None  # (K, 3) x, y, visibility
    corners: np.ndarray | None = None  # obb (4, 2)


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Ultralytics LetterBox: keep aspect, INTER_LINEAR, centred 114-grey padding; returns RGB NCHW / 255."""
    height, width = image.shape[:2]
    gain = min(size[0] / height, size[1] / width)
    new_w, new_h = max(round(width * gain), 1), max(round(height * gain), 1)
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (size[1] - new_w) / 2, (size[0] - new_h) / 2
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return to_tensor(image), Letterbox(gain, left, top, width, height)


def to_tensor(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def classify_input(image: np.ndarray, size: int) -> np.ndarray:
    """Ultralytics classify preprocessing: short side to `size`, centre crop, RGB / 255, no mean/std."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR)
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    return to_tensor(image[top : top + size, left : left + size])


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    return np.concatenate([xywh[:, :2] - xywh[:, 2:4] / 2, xywh[:, :2] + xywh[:, 2:4] / 2], 1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, shape (len(a), len(b))."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(1)
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Greedy class-aware NMS (classes kept apart by a large offset, as Ultralytics does)."""
    shifted = boxes + classes[:, None] * 7680.0
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < MAX_DET:
        keep.append(int(order[0]))
        order = order[1:][box_iou(shifted[order[:1]], shifted[order[1:]])[0] <= IOU]
    return np.array(keep, int)


def probiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise probabilistic IoU of rotated boxes (cx, cy, w, h, angle): Hellinger distance of Gaussians."""

    def covariance(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        var_w, var_h = r[:, 2] ** 2 / 12, r[:, 3] ** 2 / 12
        cos, sin = np.cos(r[:, 4]), np.sin(r[:, 4])
        return var_w * cos**2 + var_h * sin**2, var_w * sin**2 + var_h * cos**2, (var_w - var_h) * cos * sin

    eps = 1e-7
    a1, b1, c1 = (v[:, None] for v in covariance(a))
    a2, b2, c2 = (v[None] for v in covariance(b))
    dx, dy = a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1]
    det = (a1 + a2) * (b1 + b2) - (c1 + c2) ** 2
    t1 = ((a1 + a2) * dy**2 + (b1 + b2) * dx**2) / (det + eps) * 0.25
    t2 = ((c1 + c2) * (-dx) * dy) / (det + eps) * 0.5
    own = np.sqrt(np.clip(a1 * b1 - c1**2, 0, None) * np.clip(a2 * b2 - c2**2, 0, None))
    t3 = np.log(det / (4 * own + eps) + eps) * 0.5
    distance = np.clip(t1 + t2 + t3, eps, 100.0)
    return 1 - np.sqrt(1 - np.exp(-distance) + eps)


def rotated_nms(rboxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Ultralytics' OBB NMS: class offset on the centre, probiou, fast-NMS (suppressed boxes suppress too)."""
    shifted = rboxes.copy()
    shifted[:, :2] += classes[:, None] * 7680.0
    order = np.argsort(-scores, kind="stable")[:30000]
    ious = np.triu(probiou(shifted[order], shifted[order]), 1)
    keep = order[ious.max(0, initial=0.0) < IOU] if order.size else order
    return keep[:MAX_DET]


def obb_corners(rboxes: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h, angle) -> (n, 4, 2) corners, as Ultralytics' xywhr2xyxyxyxy."""
    cos, sin = np.cos(rboxes[:, 4]), np.sin(rboxes[:, 4])
    v1 = np.stack([rboxes[:, 2] / 2 * cos, rboxes[:, 2] / 2 * sin], 1)
    v2 = np.stack([-rboxes[:, 3] / 2 * sin, rboxes[:, 3] / 2 * cos], 1)
    c = rboxes[:, :2]
    return np.stack([c + v1 + v2, c + v1 - v2, c - v1 - v2, c - v1 + v2], 1)


def unletterbox(points: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Input pixels -> original image pixels for (..., 2) arrays, clipped to the image."""
    out = (points - [lb.left, lb.top]) / lb.gain
    return np.clip(out, 0, [lb.width, lb.height])


@dataclass
class Candidates:
    """Detections after thresholding and NMS, still in letterboxed input pixels."""

    boxes: np.ndarray  # xyxy
    scores: np.ndarray
    classes: np.ndarray
    extra: np.ndarray  # per-row trailing values: mask coefficients, keypoints or obb angle


def select(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    extra: np.ndarray,
    rotated: np.ndarray | None = None,
) -> Candidates:
    """Threshold at CONF, then NMS (probiou when rotated boxes are given)."""
    ok = scores > CONF
    boxes, scores, classes, extra = boxes[ok], scores[ok], classes[ok], extra[ok]
    keep = rotated_nms(rotated[ok], scores, classes) if rotated is not None else nms(boxes, scores, classes)
    return Candidates(boxes[keep], scores[keep], classes[keep], extra[keep])


def decode_raw(output: np.ndarray, nc: int, task: str) -> Candidates:
    """Ultralytics raw head `[4+nc+extra, N]`: cx,cy,w,h, sigmoid class scores, then task extras."""
    rows = output.T
    scores = rows[:, 4 : 4 + nc]
    extra = rows[:, 4 + nc :]
    rotated = np.column_stack([rows[:, :4], extra[:, :1]]) if task == "obb" else None
    return select(xywh_to_xyxy(rows[:, :4]), scores.max(1), scores.argmax(1), extra, rotated)


def decode_v5(output: np.ndarray, nc: int, task: str) -> Candidates:
    """Classic YOLOv5 `[N, 5+nc]`: cx,cy,w,h, objectness, class probs; confidence = obj * class prob."""
    probs = output[:, 5 : 5 + nc]
    scores = output[:, 4] * probs.max(1)
    return select(xywh_to_xyxy(output[:, :4]), scores, probs.argmax(1), output[:, 5 + nc :])


def decode_nms(output: np.ndarray, nc: int, task: str) -> Candidates:
    """Ultralytics nms=True rows `[300, 6+extra]`: x1,y1,x2,y2, score, class (zero padded)."""
    ok = output[:, 4] > CONF
    return Candidates(output[ok, :4], output[ok, 4], output[ok, 5].astype(int), output[ok, 6:])


def to_predictions(
    found: Candidates, task: str, lb: Letterbox, protos: np.ndarray | None, input_hw: tuple[int, int]
) -> list[Prediction]:
    """Map candidates back to the original image and decode masks / keypoints / rotated corners."""
    boxes = unletterbox(found.boxes.reshape(-1, 2, 2), lb).reshape(-1, 4)
    predictions = [Prediction(int(c), float(s), b) for c, s, b in zip(found.classes, found.scores, boxes)]
    if task == "segment":
        for p, coefficients in zip(predictions, found.extra):
            p.mask = decode_mask(coefficients, protos, p.box, lb, input_hw)
    elif task == "pose":
        for p, values in zip(predictions, found.extra):
            kpts = values.reshape(-1, 3).copy()
            kpts[:, :2] = unletterbox(kpts[:, :2], lb)
            p.keypoints = kpts
    elif task == "obb":
        centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
        rboxes = np.column_stack([centres, found.boxes[:, 2:] - found.boxes[:, :2], found.extra[:, 0]])
        for p, corners in zip(predictions, obb_corners(rboxes)):
            p.corners = (corners - [lb.left, lb.top]) / lb.gain
    return predictions


def decode_mask(
    coefficients: np.ndarray, protos: np.ndarray, box: np.ndarray, lb: Letterbox, input_hw: tuple[int, int]
) -> np.ndarray:
    """sigmoid(coef @ protos) upsampled to the input, unpadded, resized to the image, cropped to the box."""
    channels, mh, mw = protos.shape
    logits = (coefficients @ protos.reshape(channels, -1)).reshape(mh, mw)
    mask = cv2.resize(1 / (1 + np.exp(-logits)), (input_hw[1], input_hw[0]), interpolation=cv2.INTER_LINEAR)
    new_w, new_h = round(lb.width * lb.gain), round(lb.height * lb.gain)
    mask = mask[lb.top : lb.top + new_h, lb.left : lb.left + new_w]
    mask = cv2.resize(mask, (lb.width, lb.height), interpolation=cv2.INTER_LINEAR) > 0.5
    x1, y1, x2, y2 = np.round(box).astype(int)
    cropped = np.zeros_like(mask)
    cropped[y1:y2, x1:x2] = mask[y1:y2, x1:x2]
    return cropped


Decoder = Callable[[np.ndarray, int, str], Candidates]


@dataclass
class Checked:
    """One model under test."""

    file: str
    task: str
    decoder: Decoder | None  # None for classify
    names: list[str] = field(default_factory=list)


def run_model(session: Any, checked: Checked, image: np.ndarray) -> list[Prediction] | np.ndarray:
    """Predictions for one image (classify: the probability vector)."""
    shape = session.get_inputs()[0].shape
    size = (shape[2], shape[3]) if isinstance(shape[2], int) else (TRAIN_IMGSZ, TRAIN_IMGSZ)
    if checked.task == "classify":
        return session.run(None, {"images": classify_input(image, size[0])})[0][0]
    tensor, lb = letterbox(image, size)
    outputs = session.run(None, {"images": tensor})
    found = checked.decoder(outputs[0][0], len(checked.names), checked.task)
    return to_predictions(found, checked.task, lb, outputs[1][0] if len(outputs) > 1 else None, size)


# ----- metrics -----


def polygon_mask(points: np.ndarray, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask.astype(bool)


def rotated_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, _ = cv2.intersectConvexConvex(a.astype(np.float32), b.astype(np.float32))
    union = cv2.contourArea(a.astype(np.float32)) + cv2.contourArea(b.astype(np.float32)) - inter
    return float(inter / union) if union > 0 else 0.0


def long_side_angle(corners: np.ndarray) -> float:
    """Direction of the longest edge, in [0, pi)."""
    edges = np.roll(corners, -1, 0) - corners
    dx, dy = edges[np.argmax(np.linalg.norm(edges, axis=1))]
    return float(np.arctan2(dy, dx) % np.pi)


def angle_error(shape: Shape, corners: np.ndarray) -> float:
    """Degrees, modulo the shape's symmetry (pi for rectangles, pi/2 for squares)."""
    period = np.pi / 2 if shape.name == "square" else np.pi
    diff = (long_side_angle(corners) - shape.angle) % period
    return float(np.rad2deg(min(diff, period - diff)))


def match(
    truth: list[Shape], predictions: list[Prediction], obb: bool
) -> list[tuple[Shape, Prediction, float]]:
    """Greedy by score: each prediction takes the free truth with the highest IoU >= MATCH_IOU."""
    pairs: list[tuple[Shape, Prediction, float]] = []
    free = list(truth)
    for p in sorted(predictions, key=lambda p: -p.score):
        if not free:
            break
        if obb:
            ious = np.array([rotated_iou(s.points, p.corners) for s in free])
        else:
            ious = box_iou(p.box[None], np.stack([s.box for s in free]))[0]
        best = int(np.argmax(ious))
        if ious[best] >= MATCH_IOU:
            pairs.append((free.pop(best), p, float(ious[best])))
    return pairs


def object_stats(
    task: str, names: list[str], image: np.ndarray, truth: list[Shape], predictions: list[Prediction]
) -> dict[str, list[float]]:
    """Per-image counts and per-match values, summed over images by `summarise`."""
    pairs = match(truth, predictions, task == "obb")
    stats: dict[str, list[float]] = {
        "truths": [len(truth)],
        "predictions": [len(predictions)],
        "matched": [len(pairs)],
        "class_ok": [float(names[p.cls] == s.name) for s, p, _ in pairs],
        "iou": [iou for _, _, iou in pairs],
    }
    height, width = image.shape[:2]
    if task == "segment":
        for s, p, _ in pairs:
            gt = polygon_mask(s.points, width, height)
            stats.setdefault("mask_iou", []).append(float((gt & p.mask).sum() / max((gt | p.mask).sum(), 1)))
    if task == "pose":
        stats["keypoint_px"] = [
            float(np.linalg.norm(s.points - p.keypoints[:, :2], axis=1).mean()) for s, p, _ in pairs
        ]
    if task == "obb":
        stats["angle_deg"] = [angle_error(s, p.corners) for s, p, _ in pairs]
    return stats


def summarise(stats: list[dict[str, list[float]]]) -> dict[str, float]:
    total = {k: list(itertools.chain.from_iterable(s.get(k, []) for s in stats)) for k in set().union(*stats)}
    mean = lambda k: round(float(np.mean(total[k])), 4) if total.get(k) else None
    matched = sum(total["matched"])
    summary = {
        "images": len(stats),
        "objects": int(sum(total["truths"])),
        "predictions": int(sum(total["predictions"])),
        "recall": round(matched / max(sum(total["truths"]), 1), 4),
        "precision": round(matched / max(sum(total["predictions"]), 1), 4),
        "class_accuracy": mean("class_ok"),
        "mean_iou": mean("iou"),
    }
    for key in ("mask_iou", "keypoint_px", "angle_deg"):
        if key in total:
            summary[f"mean_{key}"] = mean(key)
    return summary


def describe(checked: Checked, predictions: list[Prediction]) -> list[dict[str, Any]]:
    """JSON view of predictions for verify.json."""
    rows = []
    for p in predictions:
        row: dict[str, Any] = {
            "class": checked.names[p.cls],
            "score": round(p.score, 3),
            "box": np.round(p.box, 1).tolist(),
        }
        if p.keypoints is not None:
            row["keypoints"] = np.round(p.keypoints, 2).tolist()
        if p.corners is not None:
            row["corners"] = np.round(p.corners, 1).tolist()
        if p.mask is not None:
            row["mask_pixels"] = int(p.mask.sum())
        rows.append(row)
    return rows


def evaluate(
    checked: Checked, session: Any, scenes: Iterator[tuple[str, np.ndarray, list[Shape], str | None]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics over a set of scenes, and the per-image predictions."""
    per_image: dict[str, Any] = {}
    stats: list[dict[str, list[float]]] = []
    hits: list[bool] = []
    for file_name, image, shapes, label in scenes:
        result = run_model(session, checked, image)
        if checked.task == "classify":
            top = int(np.argmax(result))
            hits.append(checked.names[top] == label)
            per_image[file_name] = {
                "label": checked.names[top],
                "probabilities": np.round(result, 4).tolist(),
            }
        else:
            stats.append(object_stats(checked.task, checked.names, image, shapes, result))
            per_image[file_name] = describe(checked, result)
    if checked.task == "classify":
        return {"images": len(hits), "top1_accuracy": round(float(np.mean(hits)), 4)}, per_image
    return summarise(stats), per_image


def model_names(path: Path) -> list[str]:
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    names = ast.literal_eval(metadata["names"])  # a Python dict literal, not JSON
    return [names[i] for i in sorted(names)]


def batch_check(session: Any, images_dir: Path) -> dict[str, Any]:
    """A dynamic model must give the same raw output for a batch of 2 as for each image alone."""
    tensors = [
        letterbox(cv2.imread(str(images_dir / f"detect_{i}.jpg")), (TRAIN_IMGSZ, TRAIN_IMGSZ))[0]
        for i in (0, 1)
    ]
    batched = session.run(None, {"images": np.concatenate(tensors)})[0]
    single = np.concatenate([session.run(None, {"images": t})[0] for t in tensors])
    wide = session.run(None, {"images": np.zeros((1, 3, 96, 160), np.float32)})[0]
    return {
        "batch2_output_shape": list(batched.shape),
        "batch2_max_abs_diff": float(np.abs(batched - single).max()),
        "input_1x3x96x160_output_shape": list(wide.shape),
    }


def same_detections(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Compare two per-image prediction dicts (v5classic against shapes-detect)."""
    count_ok = all(len(a[k]) == len(b[k]) for k in a)
    diffs = [
        abs(x - y)
        for k in a
        for pa, pb in zip(a[k], b[k])
        for x, y in zip(pa["box"] + [pa["score"]], pb["box"] + [pb["score"]])
    ]
    classes_ok = all(pa["class"] == pb["class"] for k in a for pa, pb in zip(a[k], b[k]))
    return {
        "same_count": count_ok,
        "same_classes": classes_ok,
        "max_box_or_score_diff": round(max(diffs, default=0.0), 4),
    }


def verify(models_dir: Path, images_dir: Path) -> dict[str, Any]:
    """Run every model with onnxruntime on the committed test images and on a larger held-out set."""
    import onnxruntime as ort

    checks = [
        Checked("shapes-detect.onnx", "detect", decode_raw),
        Checked("shapes-detect-dynamic.onnx", "detect", decode_raw),
        Checked("shapes-detect-nms.onnx", "detect", decode_nms),
        Checked("shapes-detect-v5classic.onnx", "detect", decode_v5),
        Checked("shapes-detect-yolo11.onnx", "detect", decode_raw),
        Checked("shapes-detect-v5u.onnx", "detect", decode_raw),
        Checked("shapes-segment.onnx", "segment", decode_raw),
        Checked("shapes-segment-dynamic.onnx", "segment", decode_raw),
        Checked("shapes-pose.onnx", "pose", decode_raw),
        Checked("shapes-obb.onnx", "obb", decode_raw),
        Checked("shapes-classify.onnx", "classify", None),
    ]
    report: dict[str, Any] = {"conf": CONF, "nms_iou": IOU, "match_iou": MATCH_IOU, "models": {}}
    for checked in checks:
        path = models_dir / checked.file
        checked.names = model_names(path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        committed, per_image = evaluate(
            checked, session, test_scenes("test", checked.task, TEST_IMAGES[checked.task])
        )
        heldout, _ = evaluate(checked, session, test_scenes("heldout", checked.task, HELDOUT_IMAGES))
        entry = {
            "task": checked.task,
            "test_images": committed,
            f"heldout_{HELDOUT_IMAGES}": heldout,
            "predictions": per_image,
        }
        if checked.file == "shapes-detect-dynamic.onnx":
            entry["dynamic_check"] = batch_check(session, images_dir)
        if checked.file == "shapes-detect-v5classic.onnx":
            entry["same_as_shapes_detect"] = same_detections(
                per_image, report["models"]["shapes-detect.onnx"]["predictions"]
            )
        report["models"][checked.file] = entry
        print(f"verify {checked.file}: test {committed} | held-out {heldout}", flush=True)
    return report


# ----------------------------------------------------------------------------------------------------------
# Descriptions: models.json and README.md
# ----------------------------------------------------------------------------------------------------------


def describe_onnx(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path))

    def tensors(values: Any) -> list[dict[str, Any]]:
        dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        return [
            {
                "name": v.name,
                "shape": dims(v),
                "dtype": onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
            }
            for v in values
        ]

    initializer_names = {i.name for i in model.graph.initializer}
    return {
        "size": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": tensors(i for i in model.graph.input if i.name not in initializer_names),
        "outputs": tensors(model.graph.output),
        "metadata_props": {p.key: p.value for p in model.metadata_props},
    }


MODEL_NOTES = {
    "shapes-detect.onnx": "YOLOv8 detect (yolov8.yaml), static batch 1, raw head `[1, 4+nc, N]`",
    "shapes-detect-dynamic.onnx": "shapes-detect's weights, `dynamic=True` (symbolic batch/height/width)",
    "shapes-detect-nms.onnx": "same weights, `nms=True`: `[1, 300, 6]` x1,y1,x2,y2,score,cls, zero padded",
    "shapes-detect-v5classic.onnx": "shapes-detect made classic YOLOv5 `[1, N, 5+nc]` by graph surgery",
    "shapes-detect-yolo11.onnx": "YOLO11 detect (yolo11.yaml)",
    "shapes-detect-v5u.onnx": "YOLOv5u detect (yolov5.yaml, anchor-free v8 head)",
    "shapes-segment.onnx": "YOLOv8 segment (yolov8-seg.yaml): `[1, 4+nc+32, N]` + protos `[1, 32, 40, 40]`",
    "shapes-segment-dynamic.onnx": "shapes-segment's weights, `dynamic=True` (the benchmarks run it at 640)",
    "shapes-pose.onnx": "YOLOv8 pose (yolov8-pose.yaml): 1 class, kpt_shape [3, 3], `[1, 4+1+9, N]`",
    "shapes-obb.onnx": "YOLOv8 OBB (yolov8-obb.yaml): `[1, 4+nc+1, N]`, last row angle in radians",
    "shapes-classify.onnx": "YOLOv8 classify (yolov8-cls.yaml), softmax `[1, nc]`, from shapes-detect",
}

README_TEMPLATE = """# visionserve test fixtures

Genuine Ultralytics YOLO ONNX models on a synthetic shapes data set, made offline by `tools/make_fixtures.py`
(its docstring says how to set up `.venv-fixtures`). Regenerate with:

    .venv-fixtures/bin/python tools/make_fixtures.py tests/fixtures{flags}

Last run: {finished}, {seconds:.0f} s wall on {cores} CPU cores ({versions}; torchvision: {torchvision}).
Trained: {trained}. Per-step timings are in `verify.json`.

## Models (`models/`)

Built from the yamls bundled in the ultralytics wheel with one custom scale (depth as `n`, width {width},
max channels {max_channels}; `n` is 0.25 and 1024), trained on CPU at imgsz {imgsz} (batch 8, nbs 8,
seed {seed}) on {train_images} synthetic 320x320 images per task, and exported with
`model.export(format="onnx", imgsz={imgsz}, simplify=True)` (default opset). Input `images` is
`[1, 3, {imgsz}, {imgsz}]` float32, RGB, 0..1. I/O shapes, metadata_props and sha256 of every file are in
`models.json`.

| file | what | size | epochs | Ultralytics val (final epoch) |
|---|---|---|---|---|
{model_rows}

## Images (`images/`)

JPEGs drawn with seeds never used in training: `detect_0..3` 320x320 plus `detect_4.jpg` 480x320 and
`detect_5.jpg` 320x480 (width x height) for letterbox mapping, then segment, pose, obb and classify images.
`ground_truth.json` gives, per image, the task, size and objects: `class` and `box` (xyxy pixels), plus
`polygon` (segment), `keypoints` ([x, y, 2] for apex, bottom_left, bottom_right; pose), `corners` (4 x [x, y])
and `angle` (obb: radians, direction of the long side, modulo pi for rectangles and pi/2 for squares).
Classify images have `label`.

## Verification (`verify.json`)

Each model was run with plain onnxruntime + numpy: letterbox, decode, class-aware NMS (iou {iou}, conf {conf};
probiou fast-NMS for OBB). A prediction matches a truth at IoU >= {match_iou} (rotated IoU for OBB).
R = recall, P = precision, cls = class accuracy of the matches. Held-out: {heldout} more fresh 320x320 images
per task, not saved.

| file | committed test images | held-out {heldout} images |
|---|---|---|
{metric_rows}

- v5classic against shapes-detect on the test images: same count {v5[same_count]}, same classes
  {v5[same_classes]}, max box/score difference {v5[max_box_or_score_diff]}.
- dynamic model: a batch of 2 gives {dyn[batch2_output_shape]} (max difference to single runs
  {dyn[batch2_max_abs_diff]:.1e}); a 1x3x96x160 input gives {dyn[input_1x3x96x160_output_shape]}.

## Layout notes

- Metadata values are strings; `names`, `imgsz`, `kpt_shape`, `kpt_names` and `args` are Python literals
  (use `ast.literal_eval`, not JSON). `args` tells `nms` and `dynamic`; `batch` stays 1 in the dynamic model.
- Raw heads have no objectness: cx, cy, w, h in letterboxed input pixels, then class scores (already sigmoid).
- v5classic keeps shapes-detect's metadata unchanged: only the output shape `[B, N, 5+nc]` (N > 5+nc) tells
  the layout. Its objectness is the max class score and the best class probability is 1, so `obj` alone and
  `obj * cls` give the same confidence on this file.
- The NMS model's rows are zero padded up to 300; keep rows with score > conf (conf 0.25, iou 0.7 baked in).
- Pose: after the class score come 3 keypoints x (x, y in input pixels, visibility already sigmoid).
- OBB: cx, cy, w, h, nc scores, angle (radians, in [-pi/4, 3pi/4)); w is not always the long side.
- Classify: short side to imgsz, centre crop, RGB / 255, no mean/std; the output is already softmax.
"""


def metric_cell(summary: dict[str, Any]) -> str:
    if "top1_accuracy" in summary:
        return f"top-1 {summary['top1_accuracy']:.3f} ({summary['images']} images)"
    labels = {
        "recall": "R",
        "precision": "P",
        "class_accuracy": "cls",
        "mean_iou": "IoU",
        "mean_mask_iou": "mask IoU",
        "mean_keypoint_px": "kpt err px",
        "mean_angle_deg": "angle err deg",
    }
    parts = [f"{label} {summary[k]:.2f}" for k, label in labels.items() if summary.get(k) is not None]
    return ", ".join(parts) + f" ({summary['objects']} objects)"


def model_row(file_name: str, info: dict[str, Any], trained: dict[str, Any]) -> str:
    val = ", ".join(f"{k.removeprefix('metrics/')} {v:.3f}" for k, v in trained.get("metrics", {}).items())
    size = f"{info['size'] / 1e6:.2f} MB"
    return (
        f"| `{file_name}` | {MODEL_NOTES[file_name]} | {size} | {trained.get('epochs', '-')} | {val or '-'} |"
    )


def write_readme(out: Path, models: dict[str, Any], report: dict[str, Any], run: dict[str, Any]) -> None:
    entries = report["models"]
    held = f"heldout_{HELDOUT_IMAGES}"
    text = README_TEMPLATE.format(
        flags=run["flags"],
        finished=run["finished"],
        seconds=run["seconds"],
        cores=os.cpu_count(),
        versions=", ".join(f"{k} {v}" for k, v in run["versions"].items()),
        torchvision=run["torchvision"],
        trained="yes" if run["trained"] else "NO, random weights (--no-train)",
        width=DEPTH_WIDTH_CHANNELS[0],
        max_channels=DEPTH_WIDTH_CHANNELS[1],
        imgsz=TRAIN_IMGSZ,
        seed=SEED,
        train_images=TRAIN_COUNTS["train"],
        model_rows="\n".join(model_row(f, info, run["training"].get(f, {})) for f, info in models.items()),
        iou=IOU,
        conf=CONF,
        match_iou=MATCH_IOU,
        heldout=HELDOUT_IMAGES,
        metric_rows="\n".join(
            f"| `{f}` | {metric_cell(e['test_images'])} | {metric_cell(e[held])} |"
            for f, e in entries.items()
        ),
        v5=entries["shapes-detect-v5classic.onnx"]["same_as_shapes_detect"],
        dyn=entries["shapes-detect-dynamic.onnx"]["dynamic_check"],
    )
    (out / "README.md").write_text(text)


# ----------------------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------------------


class Timer:
    """Collects named step durations."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}
        self.start = time.perf_counter()

    def step(self, name: str, since: float) -> None:
        self.steps[name] = round(time.perf_counter() - since, 1)
        print(f"[{time.perf_counter() - self.start:7.1f} s] {name}: {self.steps[name]} s", flush=True)


def build_models(
    models_dir: Path, work: Path, do_train: bool, epochs_scale: float, timer: Timer
) -> dict[str, Any]:
    """Train (or just build) every recipe and export all ONNX files. Returns per-file training info."""
    training: dict[str, Any] = {}
    weights: dict[str, Path] = {}
    for recipe in RECIPES:
        since = time.perf_counter()
        if do_train:
            data = prepare_data(recipe.task, work / "datasets")
            epochs = max(1, round(recipe.epochs * epochs_scale))
            pretrained = weights["shapes-detect"] if recipe.task == "classify" else None
            source, metrics = train(recipe, data, work / "cfg", work / "runs", epochs, pretrained)
            weights[recipe.name] = source
            training[f"{recipe.name}.onnx"] = {"epochs": epochs, "metrics": metrics}
        else:
            source = build_model(recipe, work / "cfg")
        export(source, models_dir / f"{recipe.name}.onnx")
        if recipe.name == "shapes-segment":  # run at 640 by the benchmarks (mask decoding vs forward)
            export(source, models_dir / "shapes-segment-dynamic.onnx", dynamic=True)
        if recipe.name == "shapes-detect":
            export(source, models_dir / "shapes-detect-dynamic.onnx", dynamic=True)
            export(source, models_dir / "shapes-detect-nms.onnx", nms=True)
            make_v5_classic(models_dir / "shapes-detect.onnx", models_dir / "shapes-detect-v5classic.onnx")
        timer.step(f"{'train+export' if do_train else 'export'} {recipe.name}", since)
    return training


def prepare_data(task: str, datasets: Path) -> Path:
    """Data set for a task, generated once per run (classify: an ImageFolder root, else a data yaml)."""
    root = datasets / task
    if task == "classify":
        return root if root.exists() else write_classify_dataset(root)
    data_yaml = root / "data.yaml"
    return data_yaml if data_yaml.exists() else write_detection_dataset(task, root)


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import ultralytics

    return {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder, e.g. tests/fixtures")
    parser.add_argument("--no-train", action="store_true", help="export random-weight models only (fast)")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every epoch count")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    timer = Timer()
    shutil.rmtree(WORK_DIR / "datasets", ignore_errors=True)
    shutil.rmtree(WORK_DIR / "runs", ignore_errors=True)
    (WORK_DIR / "cfg").mkdir(parents=True, exist_ok=True)
    configure_offline(WORK_DIR)
    torchvision_mode = ensure_torchvision()
    models_dir, images_dir = args.out / "models", args.out / "images"
    for folder in (models_dir, images_dir):  # only what this script writes
        shutil.rmtree(folder, ignore_errors=True)
    models_dir.mkdir(parents=True)

    since = time.perf_counter()
    write_test_images(images_dir)
    timer.step("test images", since)
    training = build_models(models_dir, WORK_DIR, not args.no_train, args.epochs_scale, timer)

    since = time.perf_counter()
    report = verify(models_dir, images_dir)
    timer.step("verify", since)
    models = {name: describe_onnx(models_dir / name) for name in MODEL_NOTES}
    run = {
        "flags": (" --no-train" if args.no_train else "")
        + (f" --epochs-scale {args.epochs_scale:g}" if args.epochs_scale != 1 else ""),
        "seconds": time.perf_counter() - timer.start,
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "versions": versions(),
        "torchvision": torchvision_mode,
        "trained": not args.no_train,
        "training": training,
    }
    report["timings_s"] = timer.steps | {"total": round(run["seconds"], 1)}
    report["training"] = training
    (args.out / "models.json").write_text(json.dumps(models, indent=1) + "\n")
    (args.out / "verify.json").write_text(json.dumps(report, indent=1) + "\n")
    write_readme(args.out, models, report, run)
    print(f"done in {run['seconds']:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
