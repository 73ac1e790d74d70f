"""Build the semantic segmentation fixtures: a tiny torchvision LR-ASPP export and, for it and the committed YOLO26
semantic export, each package's own per-pixel answers on the committed test images (semantic.json).

- torchvision-lraspp-tiny.onnx: torchvision's LR-ASPP head (`_lraspp_mobilenetv3`, as `lraspp_mobilenet_v3_large`
  builds it) on `mobilenet_v3_large(width_mult=0.5, dilated=True)`, 3 classes, random weights, BatchNorm statistics
  re-estimated on shapes scenes and the two classifier convolutions widened so the class map is not constant;
  `torch.onnx.export` of `model(x)["out"]` with dynamic batch, height and width. Expected: torchvision's own
  semantic segmentation preset (`transforms._presets.SemanticSegmentation`, short side to 160 here instead of 520)
  on the PIL image, onnxruntime, then as torchvision's reference evaluation reads the output: logits upsampled
  bilinearly (align_corners=False) to the original size, softmax, argmax.
- yolo26-sem-tiny.onnx (made by tools/make_family_fixtures.py, not rebuilt here): Ultralytics' own predictor's
  class map at the original size.

Maps are stored as base64 PNG (uint8). Run with the family-fixtures venv (torch, torchvision, ultralytics, onnx,
onnxruntime; about a minute on 2 cores):

    .venv-fixtures/bin/python tools/make_semantic_fixtures.py tests/fixtures/families
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_family_fixtures as ff  # noqa: E402  (seeding, calibration scenes, BatchNorm re-estimation, ONNX facts)
import make_fixtures as mf  # noqa: E402  (offline setup, torchvision import shim)

SHORT_SIDE = 160  # torchvision's preset uses 520; 160 keeps the fixture and the tests fast
LRASPP_FILE = "torchvision-lraspp-tiny.onnx"
YOLO26_FILE = "yolo26-sem-tiny.onnx"
IMAGES = ff.DETECT_IMAGES + ["segment_0.jpg"]  # 320x320, 480x320, 320x480, 320x320
FULL_SIDE, FULL_SIZE_IMAGES = 320, ["detect_0.jpg", "segment_0.jpg"]
README_START, README_END = ff.SEMANTIC_README_BLOCK, "<!-- /semantic fixtures -->"


def png_b64(array: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(array.astype(np.uint8)))
    assert ok
    return base64.b64encode(data.tobytes()).decode("ascii")


def lraspp_model(width_mult: float = 0.5, classes: int = len(ff.NAMES)) -> Any:
    """torchvision's LR-ASPP on a dilated MobileNetV3-Large (width 1.0 is `lraspp_mobilenet_v3_large` itself),
    random weights, answering its `out` logits."""
    import torch
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

    ff.seed_everything()
    model = _lraspp_mobilenetv3(mobilenet_v3_large(weights=None, width_mult=width_mult, dilated=True), classes)

    class Out(torch.nn.Module):
        """torchvision segmentation models answer a dict; the export keeps `out`."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)["out"]

    return Out().eval()


def calibrate_lraspp(model: Any, short_side: int) -> float:
    """BatchNorm statistics from shapes scenes, then the classifier widened: random logits are nearly equal
    everywhere, and widened the classes change across an image. Returns the classifier's gain."""
    import torch
    from PIL import Image
    from torchvision.transforms._presets import SemanticSegmentation

    preset = SemanticSegmentation(resize_size=short_side)
    scenes = [Image.fromarray(cv2.cvtColor(s, cv2.COLOR_BGR2RGB)) for s in ff.calibration_scenes(16)]
    ff.reestimate_batchnorm(model, [torch.stack([preset(s) for s in scenes[i : i + 4]]) for i in range(0, 16, 4)])
    head = model.model.classifier
    with torch.no_grad():
        gain = 3.0 / float(model(torch.stack([preset(s) for s in scenes])).std())
        for conv in (head.low_classifier, head.high_classifier):
            conv.weight.mul_(gain)
            conv.bias.zero_()
    return gain


def export_lraspp(model: Any, path: Path, side: int) -> None:
    """`model(x)["out"]` with dynamic batch, height and width."""
    import torch

    torch.onnx.export(model, torch.randn(1, 3, side, side), str(path), input_names=["input"], output_names=["out"],
                      opset_version=17, dynamo=False, dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"},
                                                                   "out": {0: "batch", 2: "height", 3: "width"}})


def build_lraspp(out: Path) -> dict[str, Any]:
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision.transforms._presets import SemanticSegmentation

    preset = SemanticSegmentation(resize_size=SHORT_SIDE)
    model = lraspp_model()
    gain = calibrate_lraspp(model, SHORT_SIDE)
    path = out / LRASPP_FILE
    export_lraspp(model, path, SHORT_SIDE)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gaps = [0.0]

    def expected(name: str, resize: Any) -> dict[str, Any]:
        image = Image.open(ff.IMAGES / name).convert("RGB")
        tensor = resize(image)[None]
        output = session.run(None, {"input": tensor.numpy()})[0]
        with torch.no_grad():
            gaps[0] = max(gaps[0], float((model(tensor) - torch.from_numpy(output)).abs().max()))
        upsampled = F.interpolate(torch.from_numpy(output), size=(image.height, image.width), mode="bilinear",
                                  align_corners=False)
        confidence, classes = upsampled.softmax(dim=1)[0].max(dim=0)
        class_map = classes.numpy()
        return {
            "input_shape": list(tensor.shape),
            "class_map_png": png_b64(class_map),
            "confidence_png": png_b64((confidence.numpy().astype(np.float64) * 255).astype(np.uint8)),
            "class_pixel_counts": np.bincount(class_map.ravel(), minlength=len(ff.NAMES)).tolist(),
        }

    images = {name: expected(name, preset) for name in IMAGES}
    # The 320x320 images with the short side "resized" to 320: no resampling at all, so this is also what a
    # package stretching to 320x320 (Roboflow's "Stretch to") must answer on them.
    full_size = {name: expected(name, SemanticSegmentation(resize_size=FULL_SIDE)) for name in FULL_SIZE_IMAGES}
    return {
        "family": "torchvision-segmentation",
        **ff.io_of(path),
        "names": ff.NAMES,
        "settings": {
            "reference": f"torchvision transforms._presets.SemanticSegmentation(resize_size={SHORT_SIDE}) on the "
            "PIL RGB image, onnxruntime, F.interpolate(bilinear, align_corners=False) to the original size, "
            "softmax, max over classes",
            "preprocess": f"PIL RGB; F.resize(img, [{SHORT_SIDE}]): shorter side to {SHORT_SIDE}, longer side "
            f"int({SHORT_SIDE}*long/short), bilinear, antialias (PIL); /255; Normalize ImageNet mean/std",
            "postprocess": "logits [1, 3, h, w] at the input size; bilinear upsample to the original H x W; softmax; "
            "class = argmax, confidence = max probability (stored as uint8 trunc(255 * p))",
            "images_full_size": f"the same with resize_size={FULL_SIDE} on {FULL_SIDE}x{FULL_SIDE} images",
            "max_abs_logit_diff_onnx_vs_torch": gaps[0],
        },
        "training": {"random_weights": True, "batchnorm_reestimated": True,
                     "classifier": f"low/high classifier weights x{gain:.3f} (logit std 3 on the scenes), biases 0"},
        "images": images,
        "images_full_size": full_size,
    }


def ultralytics_semantic(path: Path) -> dict[str, Any]:
    from ultralytics import YOLO

    predictor = YOLO(str(path), task="semantic")
    images = {}
    for name in IMAGES:
        result = predictor.predict(str(ff.IMAGES / name), imgsz=mf.TRAIN_IMGSZ, verbose=False)[0]
        class_map = result.semantic_mask.data.cpu().numpy()
        images[name] = {
            "class_map_png": png_b64(class_map),
            "class_pixel_counts": np.bincount(class_map.ravel(), minlength=len(ff.NAMES)).tolist(),
        }
    return {
        "family": "ultralytics-yolo26-semantic",
        "file": f"tests/fixtures/families/{path.name}",
        **ff.io_of(path),
        "settings": {
            "reference": f"ultralytics YOLO('{path.name}', task='semantic').predict(path, imgsz={mf.TRAIN_IMGSZ})",
            "preprocess": "LetterBox to 160 (centred, 114 pad, INTER_LINEAR), BGR->RGB, /255",
            "postprocess": "output0 is the uint8 class map (in-graph bilinear x8 upsample, ArgMax); crop the "
            "letterbox pad (top = round(pad - 0.1)), F.interpolate(mode='nearest') to the original size",
        },
        "images": images,
    }


def update_readme(out: Path, expected: dict[str, Any], seconds: float) -> None:
    """The semantic rows and notes, in a marked block that make_family_fixtures.py keeps when it rewrites the file."""
    lraspp = expected[LRASPP_FILE]
    outputs = ", ".join(f"`{o['name']}` {o['shape']}" for o in lraspp["outputs"])
    inputs = f"`{lraspp['input']['name']}` {lraspp['input']['shape']}"
    block = f"""{README_START}
## Semantic segmentation (`semantic.json`, made by `tools/make_semantic_fixtures.py`)

| file | family | input | outputs | metadata | size |
|---|---|---|---|---|---|
| `{LRASPP_FILE}` | {lraspp['family']} | {inputs} | {outputs} | no metadata | {lraspp['size'] / 1e6:.2f} MB |

- **{LRASPP_FILE}**: torchvision LR-ASPP (`_lraspp_mobilenetv3` on `mobilenet_v3_large(width_mult=0.5,
  dilated=True)`), 3 classes, random weights, BatchNorm re-estimated, classifier widened; `torch.onnx.export` of
  `model(x)["out"]` with dynamic batch/height/width. Expected (per pixel, base64 PNG): torchvision's
  `SemanticSegmentation` preset with short side {SHORT_SIDE}, onnxruntime, bilinear upsampling of the logits to the
  original size, softmax, argmax / max.
- `semantic.json["{YOLO26_FILE}"]`: Ultralytics' own semantic predictor's class map (per pixel) on the committed
  `{YOLO26_FILE}` (made by make_family_fixtures.py).

Generated {time.strftime("%Y-%m-%d %H:%M")} in {seconds:.0f} s; versions: \
{", ".join(f"{k} {v}" for k, v in ff.versions().items() if v != "not installed")}.
{README_END}
"""
    readme = out / "README.md"
    text = readme.read_text() if readme.exists() else ""
    if README_START in text:
        text = text[: text.index(README_START)] + text[text.index(README_END) + len(README_END) + 1 :]
    readme.write_text(text.rstrip("\n") + "\n\n" + block)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    since = time.perf_counter()
    ff.WORK.mkdir(parents=True, exist_ok=True)
    mf.configure_offline(ff.WORK)
    mf.ensure_torchvision()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    expected = {LRASPP_FILE: build_lraspp(args.out), YOLO26_FILE: ultralytics_semantic(args.out / YOLO26_FILE)}
    (args.out / "semantic.json").write_text(json.dumps(expected, indent=1) + "\n")
    update_readme(args.out, expected, time.perf_counter() - since)
    print(f"done in {time.perf_counter() - since:.0f} s -> {args.out}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
