"""Build small genuine training checkpoints offline, with each family's own predict() on them as the expected
answers, for `visionserve models add CHECKPOINT` (tests/test_checkpoints.py).

- Ultralytics: `best.pt` written by Ultralytics' own trainer, a few short epochs on the synthetic shapes of
  tools/make_fixtures.py at imgsz 160 (detect: yolov8 at width 0.125; pose: yolov8-pose, 3 keypoints), predicted
  at 160 and at the non-square 128x192.
- RF-DETR: `checkpoint_best_total.pth` for Nano detect and Seg Nano (3 classes, seeded random weights,
  `pretrain_weights=None`, heads spread as tools/make_rfdetr_fixtures.py does), saved with the keys rfdetr's
  trainer writes and `RFDETR.from_checkpoint` reads: `model` (state dict), `args` (with `class_names`),
  `model_name`, `model_config`, `rfdetr_version`. Training RF-DETR for an epoch on 2 cores would take far longer.

Expected answers come from the unexported checkpoints: Ultralytics `YOLO(best.pt).predict()` and rfdetr
`RFDETR.from_checkpoint(...).predict()`, both in PyTorch. Run with the venv of tools/make_rfdetr_fixtures.py
(`make checkpoint-fixtures` builds into a cache folder keyed by this script, its inputs and the pins):

    .venv-rfdetr/bin/python tools/make_checkpoint_fixtures.py OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_fixtures as shapes  # noqa: E402 - the tools folder is put on the path first
import make_rfdetr_fixtures as detr  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IMAGES = {"detect": ["detect_0", "detect_4", "detect_5"], "pose": ["pose_0", "pose_1"],
          "segment": ["segment_0", "segment_1"]}  # fmt: skip
EPOCHS = 4  # on make_fixtures.py's 384 training images: scores well apart (one epoch leaves them tied at the prior)
ULTRALYTICS = {"yolo-detect": shapes.RECIPES[0], "yolo-pose": shapes.RECIPES[2]}
RFDETR = {"rfdetr-nano": ("RFDETRNano", "detect"), "rfdetr-seg-nano": ("RFDETRSegNano", "segment")}
CONF, IOU = 0.05, 0.7  # low enough for several boxes per image from a one-epoch model
RECT_IMGSZ = (128, 192)  # height, width: `models add best.pt --imgsz 128,192` exports at a non-square size


def ultralytics_checkpoints(out: Path, work: Path) -> dict[str, Any]:
    """Train each recipe briefly; keep best.pt and `predict()` on it (square letterbox, as the export's input)."""
    from ultralytics import YOLO

    built: dict[str, Any] = {}
    for name, recipe in ULTRALYTICS.items():
        started = time.perf_counter()
        data = shapes.write_detection_dataset(recipe.task, work / f"data-{recipe.task}")
        (work / "cfg").mkdir(exist_ok=True)
        best, _ = shapes.train(recipe, data, work / "cfg", work / "runs", EPOCHS, None)
        shutil.copyfile(best, out / f"{name}.pt")
        model = YOLO(str(out / f"{name}.pt"))
        images = IMAGES[recipe.task]
        built[name] = {
            "file": f"{name}.pt",
            "task": recipe.task,
            "class_names": [model.names[index] for index in sorted(model.names)],
            "predictions": ultralytics_predictions(model, images, shapes.TRAIN_IMGSZ),
            "rect_predictions": ultralytics_predictions(model, images, RECT_IMGSZ),
            "build_s": time.perf_counter() - started,
        }
    return built


def ultralytics_predictions(model: Any, images: list[str], imgsz: int | tuple[int, int]) -> dict[str, list]:
    """`predict()` letterboxed to exactly `imgsz` (rect=False), as a fixed-size export's input is."""
    results = model.predict([str(image_path(image)) for image in images], imgsz=imgsz, conf=CONF, iou=IOU,
                            rect=False, verbose=False)  # fmt: skip
    return {image: ultralytics_rows(result) for image, result in zip(images, results)}


def ultralytics_rows(result: Any) -> list[dict[str, Any]]:
    rows = []
    for index in range(len(result.boxes)):
        row = {"class_id": int(result.boxes.cls[index]), "score": float(result.boxes.conf[index]),
               "xyxy": [float(value) for value in result.boxes.xyxy[index]]}  # fmt: skip
        if result.keypoints is not None:
            row["keypoints"] = [[float(x), float(y), float(c)] for (x, y), c in
                                zip(result.keypoints.xy[index], result.keypoints.conf[index])]  # fmt: skip
        rows.append(row)
    return rows


def rfdetr_checkpoints(out: Path) -> dict[str, Any]:
    """Seeded random RF-DETR models saved as the trainer saves them, then reloaded by rfdetr and predicted; masks
    go to masks.npz as `<model>/<image>/<rank>`, np.packbits(mask, axis=-1)."""
    import numpy as np
    import rfdetr
    import torch
    from PIL import Image

    built: dict[str, Any] = {}
    masks: dict[str, np.ndarray] = {}
    for name, (variant, task) in RFDETR.items():
        started = time.perf_counter()
        detr.seed_everything(detr.SEED)
        model = getattr(rfdetr, variant)(pretrain_weights=None, num_classes=len(detr.SHAPE_NAMES))
        detr.spread_heads(model, detr.SEED)
        args = {"num_classes": len(detr.SHAPE_NAMES), "class_names": list(detr.SHAPE_NAMES), "pretrain_weights": None}
        config = {key: value for key, value in model.model_config.model_dump().items() if key != "pretrain_weights"}
        path = out / f"{name}.pth"
        saved = {"model": model.model.model.state_dict(), "args": args, "model_name": variant, "model_config": config}
        torch.save({**saved, "rfdetr_version": detr.metadata.version("rfdetr")}, path)
        reloaded = rfdetr.RFDETR.from_checkpoint(str(path))
        images = IMAGES[task]
        results = [reloaded.predict(Image.open(image_path(image)).convert("RGB"), threshold=detr.THRESHOLD,
                                    include_source_image=False) for image in images]  # fmt: skip
        built[name] = {
            "file": path.name,
            "task": task,
            "class_names": reloaded.class_names,
            "resolution": int(reloaded.model.resolution),
            "predictions": {image: detr.rows(result) for image, result in zip(images, results)},
            "build_s": time.perf_counter() - started,
        }
        for image, result in zip(images, results):
            for rank, mask in enumerate(detr.masks_of(result) if task == "segment" else []):
                masks[f"{name}/{image}/{rank}"] = np.packbits(mask.astype(bool), axis=-1)
    np.savez_compressed(out / "masks.npz", **masks)
    return built


def image_path(name: str) -> Path:
    return ROOT / "tests" / "fixtures" / "images" / f"{name}.jpg"


def build(out: Path, work: Path) -> None:
    started = time.perf_counter()
    detr.set_up_offline(work)
    expected = {
        "about": "each family's own predict() on the checkpoints themselves (PyTorch); see make_checkpoint_fixtures.py",
        "versions": detr.versions(),
        "conf": CONF,
        "iou": IOU,
        "imgsz": shapes.TRAIN_IMGSZ,
        "rect_imgsz": RECT_IMGSZ,
        "models": {**ultralytics_checkpoints(out, work), **rfdetr_checkpoints(out)},
    }
    expected["total_s"] = time.perf_counter() - started
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    times = ", ".join(f"{name} {model['build_s']:.0f} s" for name, model in expected["models"].items())
    print(f"built in {expected['total_s']:.0f} s: {times}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to create (replaced if it exists)")
    out = parser.parse_args().out.resolve()
    detr.forbid_network()
    detr.build_in_place(out, build)
    print(f"checkpoints in {out}")


if __name__ == "__main__":
    main()
