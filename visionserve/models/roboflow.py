"""Roboflow model packages: `environment.json` (PREPROCESSING, CLASS_MAP, COLORS, MULTICLASS) → a manifest.

Facts from the reference: PREPROCESSING may be a JSON string or an object; its `resize.format` picks stretch or a
letterbox with black, grey (114) or white edges; the other fit modes fall back to a black letterbox; anything
unknown means stretch. `class_names.txt` (one name a line) wins over CLASS_MAP when present. Classifiers are
normalised by model type after scaling to 0..1; semantic segmentation packages (DeepLabV3+, the reference's one
such model type) take ImageNet-normalised RGB.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from visionserve.errors import ModelPackageError, TaskNotSupportedError
from visionserve.models.keypoint_schema import rfdetr_keypoint_counts
from visionserve.models.manifest import (
    Contrast,
    ModelFamily,
    ModelManifest,
    Normalization,
    Preprocessing,
    ResizeMode,
    StaticCrop,
    Task,
)

logger = logging.getLogger(__name__)

ENVIRONMENT_FILE = "environment.json"
CLASS_NAMES_FILE = "class_names.txt"

_LETTERBOX_PADS = {"Fit (black edges) in": 0, "Fit (grey edges) in": 114, "Fit (white edges) in": 255}
_BLACK_FALLBACKS = ("Fit (reflect edges) in", "Fit within", "Fill (with center crop) in")


def _enabled(step: object) -> bool:
    return isinstance(step, Mapping) and bool(step.get("enabled", True))


def _preprocessing_of(environment: Mapping[str, Any]) -> dict[str, Any]:
    value = environment.get("PREPROCESSING")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ModelPackageError("environment.json: PREPROCESSING is not valid JSON") from None
    if not isinstance(value, dict):
        raise ModelPackageError("environment.json has no PREPROCESSING object")
    return value


def _resize(preprocessing: Mapping[str, Any]) -> tuple[ResizeMode, int, tuple[int, int] | None]:
    resize = preprocessing.get("resize")
    if not isinstance(resize, Mapping):
        return ResizeMode.STRETCH, 114, None
    size = None
    width, height = resize.get("width"), resize.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        size = (height, width)
    format_name = str(resize.get("format", "Stretch to"))
    if format_name in _LETTERBOX_PADS:
        return ResizeMode.LETTERBOX, _LETTERBOX_PADS[format_name], size
    if format_name in _BLACK_FALLBACKS:
        logger.warning("resize format %r is served as a black letterbox", format_name)
        return ResizeMode.LETTERBOX, 0, size
    return ResizeMode.STRETCH, 114, size


def _steps(preprocessing: Mapping[str, Any]) -> Preprocessing:
    crop = preprocessing.get("static-crop")
    contrast = preprocessing.get("contrast")
    try:
        return Preprocessing(
            static_crop=StaticCrop.model_validate(crop) if _enabled(crop) else None,
            contrast=Contrast(contrast.get("type")) if _enabled(contrast) else None,  # type: ignore[union-attr]
            grayscale=_enabled(preprocessing.get("grayscale")),
        )
    except (ValidationError, ValueError) as error:
        raise ModelPackageError(f"environment.json: unsupported PREPROCESSING step: {error}") from None


def classifier_normalization(model_type: str | None) -> Normalization:
    """The reference's classifiers: ResNet exports take ImageNet mean/std; ViT (also the type of a classifier that
    names none), YOLOv8-cls and any other take its base default, mean = std = 0.5."""
    if (model_type or "").lower().startswith("resnet"):
        return Normalization.imagenet()
    return Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _class_map_names(environment: Mapping[str, Any]) -> list[str] | None:
    class_map = environment.get("CLASS_MAP")
    if not isinstance(class_map, Mapping) or not class_map:
        return None
    try:
        return [str(class_map[str(index)]) for index in range(len(class_map))]
    except KeyError:
        raise ModelPackageError("environment.json: CLASS_MAP keys are not 0..N-1") from None


def _normalization(task: Task, model_type: str | None) -> Normalization | None:
    """Classifiers by their model type; semantic segmentation (DeepLabV3+) ImageNet's; the rest 0..1 only."""
    if task is Task.CLASSIFICATION:
        return classifier_normalization(model_type)
    return Normalization.imagenet() if task is Task.SEMANTIC_SEGMENTATION else None


def manifest_from_environment(
    model_id: str,
    task: Task,
    environment: Mapping[str, Any],
    class_names: list[str] | None = None,
    colors: Mapping[str, str] | None = None,
    model_type: str | None = None,
    source: str | None = None,
    family: ModelFamily = ModelFamily.YOLO,
    keypoint_names: dict[int, list[str]] | None = None,
) -> ModelManifest:
    preprocessing = _preprocessing_of(environment)
    resize, pad_value, input_size = _resize(preprocessing)
    if family is ModelFamily.RFDETR:
        input_size = None  # its fixed square input decides; the package's size is the training images'
        if task is Task.CLASSIFICATION:
            raise TaskNotSupportedError(f"RF-DETR {task.value} models cannot be served yet")
    names = class_names or _class_map_names(environment)
    if not names:
        raise ModelPackageError("the package names no classes (no class list, no CLASS_MAP)")
    env_colors = environment.get("COLORS")
    try:
        return ModelManifest(
            model_id=model_id,
            task=task,
            class_names=names,
            input_size=input_size,
            resize=resize,
            pad_value=pad_value,
            preprocessing=_steps(preprocessing),
            multilabel=bool(environment.get("MULTICLASS", False)),
            normalization=_normalization(task, model_type),
            colors={**(env_colors if isinstance(env_colors, Mapping) else {}), **(colors or {})},
            model_type=model_type,
            family=family,
            keypoint_names=keypoint_names or {},
            keypoint_counts=rfdetr_keypoint_counts(family, task, keypoint_names),
            source=source,
        )
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors()[:3])
        raise ModelPackageError(f"environment.json: {problems}") from None


def read_class_names(path: Path) -> list[str]:
    """`class_names.txt`: one name a line; blank lines dropped."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_environment(path: Path) -> dict[str, Any]:
    try:
        environment = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelPackageError(f"{path.name} cannot be read: {error}") from None
    if not isinstance(environment, dict):
        raise ModelPackageError(f"{path.name} is not a JSON object")
    return environment
