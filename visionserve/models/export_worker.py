"""Export a training checkpoint to ONNX with its family's own package, and say what the checkpoint holds.

`visionserve models add CHECKPOINT` runs this file in a child process, under a Python that has the family's
package (--export-python), so the server itself never needs torch. It imports only the standard library and
that package, never visionserve:

    python export_worker.py ultralytics|rfdetr CHECKPOINT OUT_DIR [--imgsz N | --imgsz HEIGHT,WIDTH]

It writes OUT_DIR/model.onnx and OUT_DIR/checkpoint.json: family, task, class names, input size and keypoint
layout as the checkpoint records them. When it cannot, checkpoint.json holds {"error": ...} and, when the
package (or one it needs) is not installed, {"missing": name}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

ONNX_FILE, INFO_FILE = "model.onnx", "checkpoint.json"
_KEEP: list[Any] = []  # keeps a torch.library registration alive


def usable_torchvision() -> None:
    """PyPI's default torchvision wheel is a CUDA build: next to a CPU-only torch its compiled ops cannot load and
    `import torchvision` fails on `torchvision::nms`. No export runs NMS, so a plain-torch one stands in."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return  # the family's import names what is missing
    try:
        torch.ops.load_library(str(next(Path(spec.origin).parent.glob("_C*.so"))))
        return
    except (OSError, StopIteration):
        pass
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):  # torchvision's import registers fakes for both
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.impl(op, greedy_nms, "CPU")
    _KEEP.append(library)
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True


def greedy_nms(boxes: Any, scores: Any, iou_threshold: float) -> Any:
    """torchvision.ops.nms in plain torch: indices of the kept xyxy boxes, best first."""
    import torch

    order, keep = scores.argsort(descending=True), []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.numel():
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = torch.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = torch.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
        order = rest[inter / (area[best] + area[rest] - inter) <= iou_threshold]
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long)


def export_ultralytics(checkpoint: Path, out: Path, imgsz: list[int] | None) -> dict[str, Any]:
    """Ultralytics' own ONNX export (its metadata carries names, imgsz, task, kpt_shape as well), at the
    checkpoint's own size, or at [height, width] (a non-square one too)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no version checks, no downloads
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")  # never pip-install export requirements behind the user's back
    usable_torchvision()
    from ultralytics import YOLO

    link = out / checkpoint.name  # Ultralytics writes its export beside the weights: keep it out of the user's folder
    link.symlink_to(checkpoint.resolve())
    model = YOLO(str(link))
    size = imgsz or model.overrides.get("imgsz") or 640
    simplify = importlib.util.find_spec("onnxslim") is not None  # optional: the graph answers the same without it
    exported = Path(model.export(format="onnx", imgsz=size, simplify=simplify, dynamic=False, nms=False, verbose=False))
    exported.rename(out / ONNX_FILE)
    link.unlink()
    names = model.names
    head = type(model.model.model[-1]).__name__
    return {
        "family": "rtdetr" if head == "RTDETRDecoder" else "yolo",
        "task": model.task,
        "class_names": [str(names[index]) for index in sorted(names)],
        "input_size": list(size) if isinstance(size, (list, tuple)) else [size, size],
        "keypoint_shape": model.model.yaml.get("kpt_shape"),
        "package": f"ultralytics {version('ultralytics')}",
    }


def export_rfdetr(checkpoint: Path, out: Path, imgsz: list[int] | None) -> dict[str, Any]:
    """rfdetr's own `from_checkpoint` (the class, class names and settings the checkpoint records) and `export`,
    at one square resolution."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    usable_torchvision()
    from rfdetr import RFDETR

    if imgsz and imgsz[0] != imgsz[1]:
        raise ValueError("RF-DETR is exported at one square resolution; pass --imgsz N")
    model = RFDETR.from_checkpoint(str(checkpoint), **({"resolution": imgsz[0]} if imgsz else {}))
    exported = Path(model.export(output_dir=str(out), output_name="model", verbose=False))
    if exported != out / ONNX_FILE:
        exported.rename(out / ONNX_FILE)
    config = model.model_config
    keypoints = bool(getattr(config, "use_grouppose_keypoints", False))
    task = "segment" if config.segmentation_head else "pose" if keypoints else "detect"
    resolution = int(model.model.resolution)
    return {
        "family": "rfdetr",
        "task": task,
        "class_names": [str(name) for name in model.class_names],
        "input_size": [resolution, resolution],
        "keypoint_counts": [int(count) for count in config.num_keypoints_per_class] if keypoints else None,
        "package": f"rfdetr {version('rfdetr')}",
    }


def version(package: str) -> str:
    from importlib.metadata import version as installed

    return installed(package)


def image_size(text: str) -> list[int]:
    """`640` or `480,640` as [height, width]."""
    sides = [int(side) for side in text.split(",")]
    if len(sides) not in (1, 2) or min(sides) <= 0:
        raise argparse.ArgumentTypeError(f"not a size: {text}")
    return sides * 2 if len(sides) == 1 else sides


EXPORTERS = {"ultralytics": export_ultralytics, "rfdetr": export_rfdetr}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("family", choices=sorted(EXPORTERS))
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--imgsz", type=image_size, help="N, or HEIGHT,WIDTH")
    options = parser.parse_args()
    try:
        info = EXPORTERS[options.family](options.checkpoint, options.out, options.imgsz)
    except ModuleNotFoundError as error:
        info = {"error": str(error), "missing": (error.name or options.family).split(".")[0]}
    except Exception as error:  # noqa: BLE001 - whatever the package raised, the parent shows it in one line
        info = {"error": f"{type(error).__name__}: {error}"}
    (options.out / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return 1 if "error" in info else 0


if __name__ == "__main__":
    sys.exit(main())
