"""Build genuine RF-DETR ONNX test fixtures offline, with rfdetr's own answers as the expected results.

Every model is built by the `rfdetr` package itself with seeded random weights (`pretrain_weights=None`: nothing is
downloaded; the Nano/Seg-Nano/keypoint backbones use patch sizes other than DINOv2's 14, so rfdetr never asks the
Hugging Face hub for backbone weights either) and written by rfdetr's own `RFDETR.export()`. The expected results
are then produced by rfdetr's own `RFDETR.predict()` (threshold 0) with the model's forward pass answered by
onnxruntime on the exported file: `predict()` prepares the input tensor with its own code, hands it to the "model"
(here an `nn.Module` that runs the ONNX session and returns its outputs as the `(dets, labels[, masks|keypoints])`
tuple rfdetr's exported graphs produce), and decodes the outputs with its own `PostProcess` and class-name mapping.
The same images also go through the unmodified PyTorch model's `predict()`, and expected.json records how far the
two paths are apart.

Set up the venv (CPU torch; pin torchvision so pip does not pull a CUDA torch; ultralytics only backs
`ensure_torchvision()`'s NMS shim, reused from tools/make_fixtures.py):

    python3.11 -m venv .venv-rfdetr
    .venv-rfdetr/bin/pip install torch==2.13.0
    .venv-rfdetr/bin/pip install torch==2.13.0 torchvision==0.28.0 rfdetr==1.11.2 ultralytics==8.4.190 \
        onnx==1.23.2 onnxruntime==1.32.0

Run (1-1.5 minutes on 2 idle CPU cores, ~4 minutes on a busy machine; `make rfdetr-fixtures` does this into a
cache folder):

    .venv-rfdetr/bin/python tools/make_rfdetr_fixtures.py OUT_DIR

OUT_DIR is built in a sibling temporary folder, gets a `done` marker as its last file and is then renamed into
place, so a folder that has `done` is complete. See the README.md written into OUT_DIR for the files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

SEED = 0
ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = ROOT / "tests" / "fixtures" / "images"
IMAGES = ["detect_0", "detect_4", "detect_5", "segment_0", "segment_1"]
SHAPE_NAMES = ["circle", "square", "triangle"]
KEEP = 100  # results kept per image in expected.json
THRESHOLD = 0.0  # predict() keeps scores > threshold; sigmoid scores are > 0
PINNED = (
    "torch",
    "torchvision",
    "rfdetr",
    "onnx",
    "onnxruntime",
    "numpy",
    "pillow",
    "transformers",
    "ultralytics",
)

# name -> (rfdetr class, constructor kwargs, export kwargs, class names to set or None for rfdetr's default)
# `weights_from` reuses another entry's model object (same weights, another export).
MODELS: dict[str, dict[str, Any]] = {
    "rfdetr-nano-detect": {"variant": "RFDETRNano", "kwargs": {"num_classes": 3}, "names": SHAPE_NAMES},
    "rfdetr-nano-detect-dynamic": {
        "variant": "RFDETRNano",
        "weights_from": "rfdetr-nano-detect",
        "export": {"dynamic_batch": True},
        "names": SHAPE_NAMES,
    },
    "rfdetr-nano-detect-coco": {"variant": "RFDETRNano", "kwargs": {}, "names": None},
    "rfdetr-seg-nano": {"variant": "RFDETRSegNano", "kwargs": {"num_classes": 3}, "names": SHAPE_NAMES},
    "rfdetr-keypoint-preview": {"variant": "RFDETRKeypointPreview", "kwargs": {}, "names": None},
}


# ----------------------------------------------------------------------------------------------------------
# Offline set-up
# ----------------------------------------------------------------------------------------------------------


def forbid_network() -> None:
    """Fail loudly on any attempt to resolve a host name or open an internet socket."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "socket.getaddrinfo":
            raise RuntimeError(f"network access attempted while building fixtures: getaddrinfo{args[:2]}")
        if event == "socket.connect" and getattr(args[0], "family", None) in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            raise RuntimeError(f"network access attempted while building fixtures: connect {args[1]}")

    sys.addaudithook(hook)


def set_up_offline(work: Path) -> str:
    """Hub-free environment, then the helpers shared with tools/make_fixtures.py. Returns how torchvision loaded."""
    os.environ.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(work / "hf-home"),
        RF_HOME=str(work / "rf-home"),  # rfdetr's weight cache; nothing is meant to land there
        TQDM_DISABLE="1",
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_fixtures import configure_offline, ensure_torchvision

    configure_offline(work)  # ensure_torchvision() may import ultralytics for its NMS shim
    return ensure_torchvision()


def spread_heads(model: Any, seed: int) -> dict[str, float]:
    """Give the zero/constant-initialised prediction heads seeded random values, so outputs depend on the image.

    rfdetr initialises the last box-regression layer (and the keypoint head's) to zero and every class bias to the
    same prior: with untouched random weights every box is its 0.05 x 0.05 reference box and all class scores sit
    within 1e-7 of each other, too close to rank reliably. Scaling is chosen so boxes vary by about e^+-0.5 in size
    and scores spread over roughly 0.005-0.9.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    net = model.model.model
    scales = {"class_embed.weight": 0.05, "class_embed.bias": 1.0, "bbox_embed.last.weight": 0.04}

    def fill(tensor: torch.Tensor, std: float, mean: float = 0.0) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std + mean)

    with torch.no_grad():
        fill(net.class_embed.weight, scales["class_embed.weight"])
        fill(net.class_embed.bias, scales["class_embed.bias"], mean=-2.5)
        fill(net.bbox_embed.layers[-1].weight, scales["bbox_embed.last.weight"])
        # The two-stage encoder picks its proposals by top-k over these scores; near-ties there make the PyTorch
        # and ONNX top-k pick different query sets.
        for head in getattr(net.transformer, "enc_out_class_embed", None) or []:
            fill(head.weight, 0.1)
        scales["transformer.enc_out_class_embed[*].weight"] = 0.1
        if getattr(net, "keypoint_embed", None) is not None:
            fill(net.keypoint_embed.layers[-1].weight, 0.02)
            scales["keypoint_embed.last.weight"] = 0.02
            # Only class slot 0 has keypoints (schema [17]): lift it so keypoint rows reach the kept top results.
            net.class_embed.bias[0] += 5.0
            scales["class_embed.bias[0] shift"] = 5.0
    return scales


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)  # rfdetr's export draws its example input from np.random
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------
# predict() with the forward pass answered by onnxruntime
# ----------------------------------------------------------------------------------------------------------


def onnx_module(path: Path) -> Any:
    """An nn.Module whose forward pass is the ONNX session (the class is made here, after torch is imported)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    class OnnxForward(torch.nn.Module):
        """Stands in for rfdetr's LWDETR module: takes predict()'s batch tensor, returns the ONNX outputs."""

        def __init__(self) -> None:
            super().__init__()
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name
            self.inputs_seen: list[np.ndarray] = []
            self.outputs_seen: list[list[np.ndarray]] = []

        def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
            array = batch.detach().cpu().numpy().astype(np.float32, copy=True)
            outputs = self.session.run(None, {self.input_name: array})
            self.inputs_seen.append(array)
            self.outputs_seen.append(outputs)
            return tuple(torch.from_numpy(np.ascontiguousarray(output)) for output in outputs)

    return OnnxForward()


def predict_with(model: Any, module: Any, images: list[Any]) -> list[Any]:
    """Run rfdetr's predict() with `module` as the network (restoring the real one afterwards)."""
    real = model.model.model
    model.model.model = module
    try:
        return model.predict(images, threshold=THRESHOLD, include_source_image=False)
    finally:
        model.model.model = real


def capture_torch_predict(model: Any, images: list[Any]) -> tuple[list[Any], list[Any]]:
    """predict() on the PyTorch model, also returning the batch tensors it fed the network."""
    seen: list[Any] = []
    handle = model.model.model.register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach().cpu().clone())
    )
    try:
        results = model.predict(images, threshold=THRESHOLD, include_source_image=False)
    finally:
        handle.remove()
    return results, seen


# ----------------------------------------------------------------------------------------------------------
# Results to JSON
# ----------------------------------------------------------------------------------------------------------


def rows(result: Any) -> list[dict[str, Any]]:
    """The first KEEP results of one predict() answer (already sorted by descending score) as JSON rows."""
    import supervision as sv

    keypoints = isinstance(result, sv.KeyPoints)
    if keypoints:
        scores, boxes = result.detection_confidence, result.data["xyxy"]
    else:
        scores, boxes = result.confidence, result.xyxy
    out = []
    for index in range(min(KEEP, len(scores))):
        row: dict[str, Any] = {
            "class_id": int(result.class_id[index]),
            "class_name": str(result.data["class_name"][index]),
            "score": float(scores[index]),
            "xyxy": [float(v) for v in boxes[index]],
        }
        if keypoints:
            row["keypoints"] = [
                [float(x), float(y), float(c)]
                for (x, y), c in zip(result.xy[index], result.keypoint_confidence[index], strict=True)
            ]
        out.append(row)
    return out


def masks_of(result: Any) -> Any:
    return None if getattr(result, "mask", None) is None else result.mask[:KEEP]


def compare(onnx_result: Any, torch_result: Any) -> dict[str, Any]:
    """How far the ONNX-backed predict() is from the PyTorch predict(), rank by rank over the kept results."""
    import numpy as np

    a, b = rows(onnx_result), rows(torch_result)
    n = min(len(a), len(b))
    score_diff = max((abs(a[i]["score"] - b[i]["score"]) for i in range(n)), default=0.0)
    same = [i for i in range(n) if a[i]["class_id"] == b[i]["class_id"]]
    box_diff = max((float(np.abs(np.subtract(a[i]["xyxy"], b[i]["xyxy"])).max()) for i in same), default=0.0)
    report: dict[str, Any] = {
        "compared": n,
        "max_abs_score_diff": score_diff,
        "max_abs_box_diff_px": box_diff,
        "rank_class_mismatches": n - len(same),
    }
    # Order-free check too: the same (class, box) set whatever near-tied scores did to the ranking.
    unmatched = 0
    for row in a:
        candidates = [r for r in b if r["class_id"] == row["class_id"]]
        best = min((np.abs(np.subtract(r["xyxy"], row["xyxy"])).max() for r in candidates), default=np.inf)
        unmatched += int(best > 0.05)
    report["unmatched_in_other_path"] = unmatched
    if "keypoints" in (a[0] if a else {}):
        report["max_abs_keypoint_diff"] = max(
            (float(np.abs(np.subtract(a[i]["keypoints"], b[i]["keypoints"])).max()) for i in same),
            default=0.0,
        )
    ma, mb = masks_of(onnx_result), masks_of(torch_result)
    if ma is not None and mb is not None:
        disagree = [float((ma[i] != mb[i]).mean()) for i in same]
        report["max_mask_pixel_disagreement"] = max(disagree, default=0.0)
    return report


def score_gaps(result: Any) -> float:
    """Smallest gap between consecutive kept scores: how close the ranking is to a tie."""
    import numpy as np

    scores = np.asarray([r["score"] for r in rows(result)])
    return float(np.min(-np.diff(scores))) if len(scores) > 1 else float("inf")


def describe_onnx(path: Path) -> dict[str, Any]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False)

    def tensor(value: Any) -> dict[str, Any]:
        dims = [d.dim_param if d.dim_param else d.dim_value for d in value.type.tensor_type.shape.dim]
        return {
            "name": value.name,
            "shape": dims,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name,
        }

    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "opset": max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        "metadata_props": {p.key: p.value for p in graph.metadata_props},
        "inputs": [tensor(v) for v in graph.graph.input],
        "outputs": [tensor(v) for v in graph.graph.output],
    }


# ----------------------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PINNED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def build(out: Path, work: Path, selected: list[str]) -> None:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    torchvision_mode = set_up_offline(work)
    import numpy as np
    import rfdetr
    import torch
    from PIL import Image

    torch.use_deterministic_algorithms(True, warn_only=True)
    timings["imports_s"] = time.perf_counter() - start

    pil_images = {name: Image.open(IMAGE_DIR / f"{name}.jpg").convert("RGB") for name in IMAGES}
    expected: dict[str, Any] = {
        "about": "rfdetr's own predict() (threshold 0, top results kept) on onnxruntime outputs; see README.md",
        "versions": versions(),
        "torchvision_loaded": torchvision_mode,
        "seed": SEED,
        "threshold": THRESHOLD,
        "kept_per_image": KEEP,
        "images": {
            name: {
                "file": f"tests/fixtures/images/{name}.jpg",
                "width": image.width,
                "height": image.height,
                "sha256": hashlib.sha256((IMAGE_DIR / f"{name}.jpg").read_bytes()).hexdigest(),
            }
            for name, image in pil_images.items()
        },
        "models": {},
        "predictions": {},
        "timings": timings,
    }
    masks: dict[str, np.ndarray] = {}
    inputs: dict[str, np.ndarray] = {}
    built: dict[str, Any] = {}

    for name in selected:
        spec = MODELS[name]
        t0 = time.perf_counter()
        if "weights_from" in spec:
            model = built[spec["weights_from"]]
        else:
            seed_everything(SEED)
            model = getattr(rfdetr, spec["variant"])(pretrain_weights=None, **spec["kwargs"])
            if spec["names"] is not None:
                model.model.class_names = list(spec["names"])
            spec["spread"] = spread_heads(model, SEED)
            built[name] = model
        t1 = time.perf_counter()
        seed_everything(SEED)
        export_kwargs = dict(spec.get("export", {}))
        path = Path(model.export(output_dir=str(out), output_name=name, verbose=False, **export_kwargs))
        t2 = time.perf_counter()

        module = onnx_module(path)
        config = model.model_config
        args = model.model.args
        if export_kwargs.get("dynamic_batch"):
            # one predict() call on all images: a batch of len(IMAGES) through the dynamic axis
            onnx_results = predict_with(model, module, [pil_images[i] for i in IMAGES])
            torch_results, torch_batches = capture_torch_predict(model, [pil_images[i] for i in IMAGES])
        else:
            onnx_results, torch_results, torch_batches = [], [], []
            for image_name in IMAGES:
                onnx_results += predict_with(model, module, [pil_images[image_name]])
                result, seen = capture_torch_predict(model, [pil_images[image_name]])
                torch_results += result
                torch_batches += seen
        t3 = time.perf_counter()

        onnx_batches = module.inputs_seen
        onnx_inputs = [b for batch in onnx_batches for b in batch]
        torch_inputs = [b for batch in torch_batches for b in batch]
        resolution = int(model.model.resolution)
        for image_name, tensor, torch_tensor in zip(IMAGES, onnx_inputs, torch_inputs, strict=True):
            key = f"r{resolution}/{image_name}"
            if key in inputs:
                assert np.array_equal(inputs[key], tensor), f"{name}: predict() made another tensor for {key}"
            inputs[key] = tensor
            assert np.array_equal(tensor, torch_tensor.numpy()), (
                f"{name}: torch and onnx predict() inputs differ"
            )

        predictions: dict[str, Any] = {}
        checks: dict[str, Any] = {}
        gaps = []
        for image_name, onnx_result, torch_result in zip(IMAGES, onnx_results, torch_results, strict=True):
            predictions[image_name] = rows(onnx_result)
            checks[image_name] = compare(onnx_result, torch_result)
            gaps.append(score_gaps(onnx_result))
            image_masks = masks_of(onnx_result)
            if image_masks is not None:
                for index, mask in enumerate(image_masks):
                    masks[f"{name}/{image_name}/{index}"] = np.packbits(mask.astype(bool), axis=-1)
        worst = {
            key: max(c[key] for c in checks.values())
            for key in next(iter(checks.values()))
            if key != "compared"
        }
        described = describe_onnx(path)
        described["output_shapes_seen"] = [list(o.shape) for o in module.outputs_seen[0]]
        expected["models"][name] = {
            **described,
            "variant": spec["variant"],
            "same_weights_as": spec.get("weights_from"),
            "constructor": {"pretrain_weights": None, **MODELS[spec.get("weights_from") or name]["kwargs"]},
            "export_kwargs": export_kwargs,
            "heads_reinitialised_std": MODELS[spec.get("weights_from") or name].get("spread"),
            "task": "instance-segmentation"
            if config.segmentation_head
            else (
                "keypoint-detection"
                if getattr(config, "use_grouppose_keypoints", False)
                else "object-detection"
            ),
            "num_classes": int(args.num_classes),
            "logit_slots": int(args.num_classes) + 1,
            "class_names": model.class_names,
            "num_queries": int(config.num_queries),
            "num_select": int(config.num_select),
            "num_keypoints_per_class": list(getattr(config, "num_keypoints_per_class", []) or []),
            "resolution": resolution,
            "patch_size": int(config.patch_size),
            "num_windows": int(config.num_windows),
            "means": list(model.means),
            "stds": list(model.stds),
            "input_key_in_inputs_npz": f"r{resolution}/<image>",
            "predict_batches_seen": [list(b.shape) for b in onnx_batches],
            "onnx_vs_torch_predict": {"worst": worst, "per_image": checks},
            "min_gap_between_consecutive_scores": min(gaps),
            "timings_s": {"build": t1 - t0, "export": t2 - t1, "predict_onnx_and_torch": t3 - t2},
        }
        expected["predictions"][name] = predictions
        print(
            f"{name}: build {t1 - t0:.1f}s export {t2 - t1:.1f}s predict {t3 - t2:.1f}s "
            f"{described['bytes'] / 1e6:.1f} MB worst {worst}",
            flush=True,
        )

    if "rfdetr-nano-detect" in built and "rfdetr-nano-detect-dynamic" in selected:
        expected["static_vs_dynamic_max_abs_output_diff"] = static_vs_dynamic(out, inputs)

    t4 = time.perf_counter()
    np.savez_compressed(out / "masks.npz", **masks)
    np.savez_compressed(out / "inputs.npz", **inputs)
    timings["total_s"] = time.perf_counter() - start
    timings["save_s"] = time.perf_counter() - t4
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    (out / "README.md").write_text(readme(expected))


def static_vs_dynamic(out: Path, inputs: dict[str, Any]) -> list[float]:
    """Same weights, two exports: feed every 384 input through both and return the per-output max difference."""
    import numpy as np
    import onnxruntime as ort

    static = ort.InferenceSession(str(out / "rfdetr-nano-detect.onnx"), providers=["CPUExecutionProvider"])
    dynamic = ort.InferenceSession(
        str(out / "rfdetr-nano-detect-dynamic.onnx"), providers=["CPUExecutionProvider"]
    )
    batch = np.stack([inputs[f"r384/{name}"] for name in IMAGES])
    dynamic_out = dynamic.run(None, {"input": batch})
    diffs = [0.0] * len(dynamic_out)
    for index in range(len(IMAGES)):
        static_out = static.run(None, {"input": batch[index : index + 1]})
        for k, (s, d) in enumerate(zip(static_out, dynamic_out, strict=True)):
            diffs[k] = max(diffs[k], float(np.abs(s[0] - d[index]).max()))
    return diffs


def readme(expected: dict[str, Any]) -> str:
    v = expected["versions"]
    lines = [
        "# RF-DETR ONNX fixtures (built, not committed)",
        "",
        "Made by `tools/make_rfdetr_fixtures.py` (visionserve) with "
        + ", ".join(
            f"{k} {v[k]}" for k in ("rfdetr", "torch", "torchvision", "onnx", "onnxruntime", "numpy")
        ),
        (
            f"(torchvision loaded: {expected['torchvision_loaded']}). Seeded random weights (seed {SEED}; the "
            "zero/constant-initialised heads given seeded random values, see `spread_heads`), no downloads. "
            "Exported by rfdetr's own `RFDETR.export()` (opset 17, legacy TorchScript exporter, no "
            "simplification, no ONNX metadata)."
        ),
        "",
        "| file | variant | input | outputs | MB | export s |",
        "|---|---|---|---|---|---|",
    ]
    for m in expected["models"].values():
        ins = ", ".join(f"`{i['name']}` {i['shape']}" for i in m["inputs"])
        outs = ", ".join(f"`{o['name']}` {o['shape']}" for o in m["outputs"])
        lines.append(
            f"| `{m['file']}` | {m['variant']} {m['constructor']} {m['export_kwargs'] or ''} | {ins} | {outs} "
            f"| {m['bytes'] / 1e6:.1f} | {m['timings_s']['export']:.1f} |"
        )
    lines += [
        "",
        "Other files:",
        (
            "- `expected.json`: `predictions[model][image]` = the first "
            f"{KEEP} results of rfdetr's `predict(image, threshold={THRESHOLD})` run with the network's forward pass "
            "answered by onnxruntime on that ONNX file, each `{class_id, class_name, score, xyxy}` (original-image "
            "pixels; keypoint models add `keypoints` = [[x, y, confidence] x 17]). Also `models[model]` (I/O names "
            "and shapes, sha256, class slots, num_select, resolution, mean/std, timings, and `onnx_vs_torch_predict`: "
            "the same predict() on the PyTorch model compared rank by rank), `images` and `versions`."
        ),
        (
            "- `masks.npz`: segmentation masks from the same predict() call at original image size, key "
            "`<model>/<image>/<rank>`, `np.packbits(mask, axis=-1)`; unpack with "
            "`np.unpackbits(a, axis=-1, count=width).astype(bool)`."
        ),
        "- `inputs.npz`: the float32 `[3, R, R]` tensor predict() fed the network, key `r<R>/<image>`.",
        "- `done`: written last; a folder without it is incomplete.",
        "",
        "Timings (s): " + ", ".join(f"{k} {val:.1f}" for k, val in expected["timings"].items()),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to create (replaced if it exists)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    options = parser.parse_args()
    forbid_network()
    out = options.out.resolve()
    build_in_place(out, lambda partial, work: build(partial, work, options.models))
    print(f"fixtures in {out}")


def build_in_place(out: Path, build_into: Callable[[Path, Path], None]) -> None:
    """`build_into(folder, scratch)` in a sibling temporary folder, `done` written last, then renamed to `out`:
    a folder with `done` is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    partial.chmod(0o755)
    try:
        with tempfile.TemporaryDirectory(prefix=f"{out.name}-work-") as work:
            build_into(partial, Path(work))
        (partial / "done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


if __name__ == "__main__":
    main()
