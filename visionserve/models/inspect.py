"""Building manifests for model files users bring (a bare Ultralytics ONNX export, or a Roboflow package folder),
checking the server can run them, and adding them to the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from visionserve.errors import ModelPackageError
from visionserve.models.ids import validate_model_id
from visionserve.models.loader import build_predictor, open_session
from visionserve.models.manifest import ModelManifest, ModelPackage, ResizeMode, Task
from visionserve.models.roboflow import (
    CLASS_NAMES_FILE,
    ENVIRONMENT_FILE,
    manifest_from_environment,
    read_class_names,
    read_environment,
)
from visionserve.models.store import ModelStore
from visionserve.models.ultralytics import parse_metadata
from visionserve.runtime.onnx_model import OnnxModel, RuntimeOptions

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

    def apply(self, manifest: ModelManifest) -> ModelManifest:
        update = {
            "task": self.task,
            "class_names": self.class_names,
            "input_size": self.input_size,
            "resize": self.resize,
            "multilabel": self.multilabel or None,
        }
        return manifest.model_copy(update={key: value for key, value in update.items() if value is not None})


def manifest_for(
    runner: OnnxModel, model_id: str, overrides: ManifestOverrides, source: str | None = None
) -> ModelManifest:
    """A bare ONNX file: everything from its Ultralytics metadata, unless overridden."""
    metadata = parse_metadata(runner.metadata)
    task = overrides.task or metadata.task
    if task is None:
        raise ModelPackageError("the ONNX metadata names no task; pass one (--task detect|segment|...)")
    class_names = overrides.class_names or metadata.class_names
    if not class_names:
        raise ModelPackageError("the ONNX metadata has no class names; pass them (--classes a,b,c)")
    default_resize = ResizeMode.CENTER_CROP if task is Task.CLASSIFICATION else ResizeMode.LETTERBOX
    return ModelManifest(
        model_id=model_id,
        task=task,
        class_names=class_names,
        input_size=overrides.input_size or metadata.input_size or runner.input_hw,
        stride=metadata.stride or 32,
        resize=overrides.resize or default_resize,
        multilabel=overrides.multilabel,
        keypoint_shape=metadata.keypoint_shape,
        keypoint_names=metadata.keypoint_names or {},
        source=source,
    )


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
    task = overrides.task or _package_task(folder) or parse_metadata(runner.metadata).task
    if task is None:
        raise ModelPackageError("the package does not say its task; pass one (--task detect|segment|...)")
    names_file = folder / CLASS_NAMES_FILE
    manifest = manifest_from_environment(
        model_id,
        task,
        read_environment(folder / ENVIRONMENT_FILE),
        class_names=read_class_names(names_file) if names_file.is_file() else None,
        source=str(folder.resolve()),
    )
    return weights, overrides.apply(manifest)


def _package_task(folder: Path) -> Task | None:
    """`model_type.json` (written by the reference's cache) records the project's task."""
    try:
        recorded = json.loads((folder / "model_type.json").read_text()).get("project_task_type")
        return Task.parse(recorded) if recorded else None
    except (OSError, ValueError, AttributeError):
        return None


def import_model(
    store: ModelStore, path: Path, model_id: str, overrides: ManifestOverrides, replace: bool = False
) -> ModelPackage:
    """Check that `path` (an ONNX file or a Roboflow package folder) is a model this server can run, then copy it
    into the store."""
    validate_model_id(model_id)
    if path.is_dir():
        weights, manifest = _package_manifest(path, model_id, overrides)
        check_runnable(weights, manifest)
        extras = {name: (path / name).read_bytes() for name in (ENVIRONMENT_FILE, CLASS_NAMES_FILE) if (path / name).is_file()}
        return store.add(weights, manifest, replace=replace, extra_files=extras)
    if not path.is_file():
        raise FileNotFoundError(f"no such file or folder: {path}")
    runner = open_session(path, RuntimeOptions())
    manifest = manifest_for(runner, model_id, overrides, source=str(path.resolve()))
    check_runnable(path, manifest, runner)
    return store.add(path, manifest, replace=replace)
