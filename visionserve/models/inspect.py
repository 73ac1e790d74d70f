"""Building a manifest for a bare ONNX file from its Ultralytics metadata, with user overrides."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from visionserve.errors import ModelPackageError
from visionserve.models.ids import validate_model_id
from visionserve.models.loader import build_predictor, open_session
from visionserve.models.manifest import ModelManifest, ModelPackage, ResizeMode, Task
from visionserve.models.store import ModelStore
from visionserve.models.ultralytics import parse_metadata
from visionserve.runtime.onnx_model import OnnxModel, RuntimeOptions


@dataclass(frozen=True)
class ManifestOverrides:
    """Values given on the command line; each wins over the file's metadata."""

    task: Task | None = None
    class_names: list[str] | None = None
    input_size: tuple[int, int] | None = None
    resize: ResizeMode | None = None


def manifest_for(
    runner: OnnxModel, model_id: str, overrides: ManifestOverrides, source: str | None = None
) -> ModelManifest:
    metadata = parse_metadata(runner.metadata)
    task = overrides.task or metadata.task
    if task is None:
        raise ModelPackageError("the ONNX metadata names no task; pass one (--task detect|segment|...)")
    class_names = overrides.class_names or metadata.class_names
    if not class_names:
        raise ModelPackageError("the ONNX metadata has no class names; pass them (--classes a,b,c)")
    return ModelManifest(
        model_id=model_id,
        task=task,
        class_names=class_names,
        input_size=overrides.input_size or metadata.input_size or runner.input_hw,
        stride=metadata.stride or 32,
        resize=overrides.resize or ResizeMode.LETTERBOX,
        source=source,
    )


def import_onnx(
    store: ModelStore, path: Path, model_id: str, overrides: ManifestOverrides, replace: bool = False
) -> ModelPackage:
    """Check that the file is an ONNX model this server can run, then copy it into the store."""
    validate_model_id(model_id)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    runner = open_session(path, RuntimeOptions())
    manifest = manifest_for(runner, model_id, overrides, source=str(path.resolve()))
    build_predictor(ModelPackage(manifest=manifest, weights_path=path), runner, max_batch_size=1)
    return store.add(path, manifest, replace=replace)
