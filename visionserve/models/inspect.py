"""Building manifests for model files users bring (a bare ONNX export, or a Roboflow package folder), checking
the server can run them, and adding them to the store.

A bare file's family and task come from what it carries: output names (RF-DETR's `dets`/`labels`), Ultralytics
metadata (`task`, `head`), or failing those the output shapes (YOLO-NAS's boxes and scores, super-gradients' NMS
outputs). Where shapes alone fit more than one family, the model is refused with the candidates and the flag that
chooses, never served on a guess.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionserve.errors import ModelPackageError, TaskNotSupportedError
from visionserve.models.checkpoints import CheckpointExporter, exported_model, is_checkpoint
from visionserve.models.ids import validate_model_id
from visionserve.models.keypoint_schema import KEYPOINTS_METADATA_FILE, read_keypoint_schema, rfdetr_keypoint_counts
from visionserve.models.loader import build_predictor, open_session
from visionserve.models.manifest import (
    TORCHVISION_CROP_FRACTION,
    TORCHVISION_SEGMENTATION_SIDE,
    ModelFamily,
    ModelManifest,
    ModelPackage,
    Normalization,
    ResizeMode,
    Task,
)
from visionserve.models.roboflow import (
    CLASS_NAMES_FILE,
    ENVIRONMENT_FILE,
    manifest_from_environment,
    read_class_names,
    read_environment,
)
from visionserve.models.store import ModelStore
from visionserve.models.ultralytics import UltralyticsMetadata, parse_metadata
from visionserve.runtime.onnx_model import RUNTIME_ERRORS, OnnxModel, RuntimeOptions
from visionserve.tasks.yolo_nas import nas_layout

# Weights file names in Roboflow packages, by model family.
PACKAGE_WEIGHTS = ("weights.onnx", "yolov5s_weights.onnx", "best.onnx")


@dataclass(frozen=True)
class ManifestOverrides:
    """Values given on the command line; each wins over the file's metadata."""

    task: Task | None = None
    class_names: list[str] | None = None
    input_size: tuple[int, int] | None = None
    resize: ResizeMode | None = None
    multilabel: bool = False
    family: ModelFamily | None = None
    normalization: Normalization | None = None
    no_normalization: bool = False  # `--normalize none`: the model takes plain 0..1 pixels
    crop_fraction: float | None = None
    keypoint_names: dict[int, list[str]] | None = None  # `--keypoints FILE`, or a package's keypoints_metadata.json
    keypoint_counts: list[int] | None = None  # RF-DETR: keypoints per class slot (from a checkpoint)

    @property
    def chose_normalization(self) -> bool:
        return self.normalization is not None or self.no_normalization

    def apply(self, manifest: ModelManifest) -> ModelManifest:
        update = {
            "task": self.task,
            "class_names": self.class_names,
            "input_size": self.input_size,
            "resize": self.resize,
            "multilabel": self.multilabel or None,
            "family": self.family,
            "normalization": self.normalization,
            "crop_fraction": self.crop_fraction,
            "keypoint_names": self.keypoint_names,
            "keypoint_counts": self.keypoint_counts,
        }
        return manifest.model_copy(update={key: value for key, value in update.items() if value is not None})


def probe_output_shapes(runner: OnnxModel, input_hw: tuple[int, int]) -> list[tuple[int, ...]]:
    """Output shapes of one pass on a blank input (exports often leave output axes symbolic)."""
    probe = np.zeros((runner.batch_size or 1, 3, *(runner.input_hw or input_hw)), dtype=np.float32)
    try:
        return [output.shape for output in runner.run(probe)]
    except RUNTIME_ERRORS as error:
        raise ModelPackageError(f"the model does not run on a blank {probe.shape[2]}x{probe.shape[3]} input: {error}") from None


def recognise(
    runner: OnnxModel, metadata: UltralyticsMetadata, overrides: ManifestOverrides, input_hw: tuple[int, int]
) -> tuple[ModelFamily, Task]:
    """The model's family and task from what the file carries, the user's flags winning."""
    if overrides.family is not None:
        family = overrides.family
    elif is_rfdetr(runner):
        family = ModelFamily.RFDETR
    elif metadata.head == "RTDETRDecoder":
        family = ModelFamily.RTDETR
    elif metadata.is_ultralytics:
        family = ModelFamily.YOLO
    else:
        family = None
    shapes = probe_output_shapes(runner, input_hw) if family is None else None
    if shapes is not None and nas_layout(runner.output_names, shapes) is not None:
        family = ModelFamily.YOLO_NAS
    if family is ModelFamily.RFDETR:
        return family, overrides.task or rfdetr_task(runner)
    if family is not None and family is not ModelFamily.YOLO:
        return family, overrides.task or Task.OBJECT_DETECTION
    if metadata.task_name and metadata.task is None:
        raise TaskNotSupportedError(
            f"this Ultralytics model's task is {metadata.task_name!r} (its metadata), which this server does not "
            f"serve; it serves {', '.join(task.value for task in Task)}"
        )
    task = overrides.task or metadata.task
    shapes = shapes or probe_output_shapes(runner, input_hw)
    if family is None and not metadata.class_names:
        ambiguous_family(shapes, overrides)
    task = task or task_from_outputs(shapes)
    if task is Task.CLASSIFICATION and not metadata.is_ultralytics and not overrides.chose_normalization:
        raise ModelPackageError(
            "a plain classifier without metadata: its input normalisation cannot be told from the file; pass "
            "--normalize imagenet (torchvision and timm models: ImageNet mean/std, resize to 256 and crop 224) "
            "or --normalize none (pixels scaled to 0..1, as Ultralytics classifiers); add --multilabel if its classes "
            "are independent (one sigmoid score each)"
        )
    if task is Task.SEMANTIC_SEGMENTATION and not metadata.is_ultralytics and not overrides.chose_normalization:
        raise ModelPackageError(
            "a plain semantic segmentation model without metadata: its input normalisation cannot be told from the "
            "file; pass --normalize imagenet (torchvision segmenters, DeepLabV3+: ImageNet mean/std, short side "
            "resized to 520 or --imgsz) or --normalize none (pixels scaled to 0..1)"
        )
    return ModelFamily.YOLO, task


def is_rfdetr(runner: OnnxModel) -> bool:
    return {"dets", "labels"} <= set(runner.output_names)


def rfdetr_task(runner: OnnxModel) -> Task:
    """RF-DETR's task from its output names: `masks` for segmentation, `keypoints` for keypoint detection."""
    if "keypoints" in runner.output_names:
        return Task.KEYPOINT_DETECTION
    return Task.INSTANCE_SEGMENTATION if "masks" in runner.output_names else Task.OBJECT_DETECTION


def ambiguous_family(shapes: list[tuple[int, ...]], overrides: ManifestOverrides) -> None:
    """Refuse a metadata-free [B, N, 5 + C] output: classic YOLOv5 and YOLOX both write it, with different pixels
    in (RGB 0..1, centred letterbox vs BGR 0..255, top-left) and boxes out."""
    if len(shapes) == 1 and len(shapes[0]) == 3 and shapes[0][1] > shapes[0][2] and overrides.family is None:
        raise ModelPackageError(
            f"the output {list(shapes[0])} (boxes, objectness, class scores) is written by both classic YOLOv5 and "
            "YOLOX exports, and the file has no metadata to tell them apart; pass --family yolov5 or --family yolox"
        )


def task_from_outputs(shapes: list[tuple[int, ...]]) -> Task:
    """Exports without a task in their metadata (classic YOLOv5 writes only stride and names): [B, C] scores are
    a classifier, a second 4-D output holds mask prototypes, one 3-D output is detection."""
    if len(shapes) == 1 and len(shapes[0]) == 2:
        return Task.CLASSIFICATION
    if len(shapes) == 2 and len(shapes[0]) == 3 and len(shapes[1]) == 4:
        return Task.INSTANCE_SEGMENTATION
    if len(shapes) == 1 and len(shapes[0]) == 3:
        return Task.OBJECT_DETECTION
    if len(shapes) == 1 and len(shapes[0]) == 4:
        raise ModelPackageError(
            f"the output {list(shapes[0])} looks like per-pixel class scores, but a file without metadata cannot "
            "say it is semantic segmentation; pass --task semantic-segmentation (or semantic) and its input "
            "normalisation: --normalize imagenet for torchvision segmenters and DeepLabV3+"
        )
    raise ModelPackageError(
        f"cannot tell the model's task from its outputs {[list(shape) for shape in shapes]}; pass one "
        "(--task detect|segment|classify|pose|obb|semantic)"
    )


def manifest_for(
    runner: OnnxModel, model_id: str, overrides: ManifestOverrides, source: str | None = None
) -> ModelManifest:
    """A bare ONNX file: everything from what the file says, unless overridden."""
    metadata = parse_metadata(runner.metadata)
    input_size = overrides.input_size or metadata.input_size or runner.input_hw
    family, task = recognise(runner, metadata, overrides, input_size or (640, 640))
    class_names = overrides.class_names or metadata.class_names
    if not class_names:
        raise ModelPackageError("the ONNX metadata has no class names; pass them (--classes a,b,c)")
    normalization = overrides.normalization
    default_crop = TORCHVISION_CROP_FRACTION if normalization is not None and task is Task.CLASSIFICATION else 1.0
    resize = overrides.resize or default_resize(family, task, metadata.is_ultralytics, runner.input_hw is None)
    if resize is ResizeMode.SHORT_SIDE and input_size is None:
        input_size = (TORCHVISION_SEGMENTATION_SIDE, TORCHVISION_SEGMENTATION_SIDE)
    return ModelManifest(
        model_id=model_id,
        task=task,
        family=family,
        class_names=class_names,
        input_size=input_size,
        stride=metadata.stride or 32,
        resize=resize,
        normalization=normalization,
        crop_fraction=overrides.crop_fraction or default_crop,
        multilabel=overrides.multilabel,
        keypoint_shape=metadata.keypoint_shape,
        keypoint_names=overrides.keypoint_names or metadata.keypoint_names or {},
        keypoint_counts=overrides.keypoint_counts or rfdetr_keypoint_counts(family, task, overrides.keypoint_names),
        source=source,
    )


def default_resize(family: ModelFamily, task: Task, ultralytics: bool, dynamic_input: bool) -> ResizeMode:
    if task is Task.CLASSIFICATION:
        return ResizeMode.CENTER_CROP
    if task is Task.SEMANTIC_SEGMENTATION and not ultralytics:  # torchvision's preset; a fixed input is filled
        return ResizeMode.SHORT_SIDE if dynamic_input else ResizeMode.STRETCH
    if family in (ModelFamily.RFDETR, ModelFamily.RTDETR):
        return ResizeMode.STRETCH
    return ResizeMode.LETTERBOX


def check_runnable(weights: Path, manifest: ModelManifest, runner: OnnxModel | None = None) -> None:
    """Open the model and run it once on a blank input, so unusable files are refused up front."""
    runner = runner or open_session(weights, RuntimeOptions())
    build_predictor(ModelPackage(manifest=manifest, weights_path=weights), runner, max_batch_size=1)


def _package_manifest(folder: Path, model_id: str, overrides: ManifestOverrides) -> tuple[Path, ModelManifest]:
    """A Roboflow package folder: weights, environment.json, and class_names.txt or CLASS_MAP."""
    weights = next((folder / name for name in PACKAGE_WEIGHTS if (folder / name).is_file()), None)
    if weights is None:
        raise ModelPackageError(f"{folder} holds none of {', '.join(PACKAGE_WEIGHTS)}")
    runner = open_session(weights, RuntimeOptions())
    family = overrides.family or _package_family(runner)
    recorded_task, model_type = _recorded_type(folder)
    task = overrides.task or recorded_task
    if task is None and family is ModelFamily.YOLO_NAS:
        task = Task.OBJECT_DETECTION
    if task is None:
        task = rfdetr_task(runner) if family is ModelFamily.RFDETR else parse_metadata(runner.metadata).task
    if task is None:
        raise ModelPackageError("the package does not say its task; pass one (--task detect|segment|...)")
    names_file = folder / CLASS_NAMES_FILE
    schema_file = folder / KEYPOINTS_METADATA_FILE
    if overrides.keypoint_names is None and schema_file.is_file() and task is Task.KEYPOINT_DETECTION:
        overrides = dataclasses.replace(overrides, keypoint_names=read_keypoint_schema(schema_file))
    counts = overrides.keypoint_counts or rfdetr_keypoint_counts(family, task, overrides.keypoint_names)
    overrides = dataclasses.replace(overrides, keypoint_counts=counts)
    manifest = manifest_from_environment(
        model_id,
        task,
        read_environment(folder / ENVIRONMENT_FILE),
        class_names=read_class_names(names_file) if names_file.is_file() else None,
        model_type=model_type,
        source=str(folder.resolve()),
        family=family,
    )
    return weights, overrides.apply(manifest)


def _package_family(runner: OnnxModel) -> ModelFamily:
    """RF-DETR and YOLO-NAS tell by their outputs; the reference's other packaged models are YOLO-family."""
    if is_rfdetr(runner):
        return ModelFamily.RFDETR
    if nas_layout(runner.output_names, probe_output_shapes(runner, (640, 640))) is not None:
        return ModelFamily.YOLO_NAS
    return ModelFamily.YOLO


def _recorded_type(folder: Path) -> tuple[Task | None, str | None]:
    """`model_type.json` (written by the reference's cache) records the project's task and the model type, which
    decides a classifier's normalisation."""
    try:
        recorded = json.loads((folder / "model_type.json").read_text())
        task, model_type = recorded.get("project_task_type"), recorded.get("model_type")
        return (Task.parse(task) if task else None), (model_type if isinstance(model_type, str) else None)
    except (OSError, ValueError, AttributeError):
        return None, None


def import_model(
    store: ModelStore,
    path: Path,
    model_id: str,
    overrides: ManifestOverrides,
    replace: bool = False,
    exporter: CheckpointExporter | None = None,
) -> ModelPackage:
    """Check that `path` (an ONNX file, a training checkpoint exported to ONNX by `exporter`, or a Roboflow
    package folder) is a model this server can run, then copy it into the store."""
    validate_model_id(model_id)
    extras: dict[str, bytes] = {}
    if path.is_dir():
        weights, manifest = _package_manifest(path, model_id, overrides)
        check_runnable(weights, manifest)
        kept = (ENVIRONMENT_FILE, CLASS_NAMES_FILE, KEYPOINTS_METADATA_FILE)
        extras = {name: (path / name).read_bytes() for name in kept if (path / name).is_file()}
    elif path.is_file():
        weights, export = path, None
        if is_checkpoint(path):
            weights, overrides = exported_model(store, path, overrides, exporter or CheckpointExporter())
            export = weights.parent.name  # recorded, so removing the last model made from it removes the export
        runner = open_session(weights, RuntimeOptions())
        manifest = manifest_for(runner, model_id, overrides, source=str(path.resolve())).model_copy(
            update={"export": export}
        )
        check_runnable(weights, manifest, runner)
    else:
        raise FileNotFoundError(f"no such file or folder: {path}")
    if overrides.multilabel and manifest.task is not Task.CLASSIFICATION:
        raise ModelPackageError(f"--multilabel is for classifiers; this model's task is {manifest.task.value}")
    with store.locked(model_id):
        store.discard_leftovers(model_id)  # what a `models add` or download killed half-way left
        return store.add(weights, manifest, replace=replace, extra_files=extras)
