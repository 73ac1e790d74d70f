"""Build the benchmark's models of real size for the kinds the test fixtures keep tiny (a sub-millisecond forward
pass measures nothing but HTTP): torchvision architectures at their published size, random weights, since a
forward pass costs the same whatever the weights hold.

- lraspp-mobilenet-v3-large.onnx: `lraspp_mobilenet_v3_large` (21 classes, as torchvision's VOC weights), BatchNorm
  re-estimated and the classifier widened as for the semantic fixture, so class maps have regions, not one class.
- resnet18.onnx: `resnet18` with 10 classes at 224, softmax outside the graph (what the weights API's `resnet18`
  type serves); resnet18-multilabel.onnx: the same network ending in a sigmoid (a multi-label classifier).
- yolo-nas-s.onnx: super-gradients' YOLO-NAS S at 640 with 80 classes, no NMS in the graph, exported by
  tools/make_yolo_nas_fixtures.py in the Python given as --yolo-nas-python (super-gradients has a venv of its own).

Run with the RF-DETR venv (torch, torchvision, onnx; `make bench` does, into a cache folder like the fixtures'):

    .venv-rfdetr/bin/python tools/make_bench_models.py OUT_DIR --yolo-nas-python .venv-yolo-nas/bin/python
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import make_family_fixtures as ff  # noqa: E402  (seeding)
import make_fixtures as mf  # noqa: E402  (offline setup, torchvision import shim)
import make_semantic_fixtures as sem  # noqa: E402  (the LR-ASPP builder and its calibration)

SHORT_SIDE = 520  # torchvision's preset for its segmentation weights
CLASSIFIER_SIDE = 224


def build_lraspp(out: Path) -> None:
    model = sem.lraspp_model(width_mult=1.0, classes=21)
    sem.calibrate_lraspp(model, SHORT_SIDE)
    sem.export_lraspp(model, out / "lraspp-mobilenet-v3-large.onnx", SHORT_SIDE)


def export_classifier(model: Any, path: Path) -> None:
    import torch

    torch.onnx.export(model.eval(), torch.randn(1, 3, CLASSIFIER_SIDE, CLASSIFIER_SIDE), str(path),
                      input_names=["input"], output_names=["output"], opset_version=17, dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})  # fmt: skip


def build_classifiers(out: Path) -> None:
    import torch
    from torchvision.models import resnet18

    ff.seed_everything()
    network = resnet18(weights=None, num_classes=10)
    export_classifier(network, out / "resnet18.onnx")
    export_classifier(torch.nn.Sequential(network, torch.nn.Sigmoid()), out / "resnet18-multilabel.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--yolo-nas-python", required=True, help="a Python with super-gradients (.venv-yolo-nas)")
    args = parser.parse_args()
    out = args.out
    started = time.perf_counter()
    mf.configure_offline(mf.WORK_DIR / "bench-models")  # ensure_torchvision() may import ultralytics for its NMS
    mf.ensure_torchvision()
    scratch = out.with_name(out.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    build_lraspp(scratch)
    build_classifiers(scratch)
    subprocess.run([args.yolo_nas_python, str(TOOLS / "make_yolo_nas_fixtures.py"), "--bench", str(scratch)],
                   check=True)  # fmt: skip
    (scratch / "done").write_text(f"built in {time.perf_counter() - started:.0f} s\n")
    shutil.rmtree(out, ignore_errors=True)
    scratch.rename(out)
    print(f"bench models in {out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
