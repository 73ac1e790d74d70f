"""A model as a weights API describes it, read from either reply: `/ort/{project}/{version}` (`{"ort": {...}}`,
environment.json fetched from its URL) or `/getWeights` (instant models: the environment inline). A field of the
wrong type is the API's fault, a 502."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from visionserve.models.weights_api_errors import WeightsApiBadResponse


@dataclass(frozen=True)
class RemoteModel:
    task_type: str
    model_type: str | None
    weights_url: str
    environment: dict[str, Any]
    class_names: list[str] | None = None
    colors: dict[str, str] = field(default_factory=dict)
    keypoints_metadata: Any = None  # keypoint models: the keypoints_metadata.json list, as the API sent it


def _text(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise WeightsApiBadResponse(f"The weights API answered a {type(value).__name__} for `{name}`, not text.")


def _colors(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(color, str) for color in value.values()):
        raise WeightsApiBadResponse("The weights API answered `colors` that are not a map of class names to colours.")
    return {str(name): color for name, color in value.items()}


def ort_files(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `ort` object of a description, which must name the weights and the environment."""
    ort = payload.get("ort")
    if not isinstance(ort, Mapping) or not ort.get("model") or not ort.get("environment"):
        raise WeightsApiBadResponse("The weights API answered without the model's files (ort.model, ort.environment).")
    return ort


def from_ort(ort: Mapping[str, Any], environment: Mapping[str, Any]) -> RemoteModel:
    return RemoteModel(
        task_type=_text(ort.get("type"), "type") or "object-detection",
        model_type=_text(ort.get("modelType"), "modelType"),
        weights_url=str(ort["model"]),
        environment=dict(environment),
        class_names=[str(name) for name in ort["classes"]] if isinstance(ort.get("classes"), list) else None,
        colors=_colors(ort.get("colors")),
        keypoints_metadata=ort.get("keypoints_metadata"),
    )


def from_get_weights(payload: Mapping[str, Any]) -> RemoteModel:
    files = payload.get("modelFiles")
    weights = files.get("ort", {}).get("model") if isinstance(files, Mapping) else None
    environment = payload.get("environment")
    if not weights or not isinstance(environment, Mapping):
        raise WeightsApiBadResponse("The weights API answered without the model's files (modelFiles.ort.model).")
    classes = payload.get("classes")
    return RemoteModel(
        task_type=_text(payload.get("taskType"), "taskType") or "object-detection",
        model_type=_text(payload.get("modelType"), "modelType"),
        weights_url=str(weights),
        environment=dict(environment),
        class_names=[str(name) for name in classes] if isinstance(classes, list) else None,
        colors=_colors(payload.get("colors")),
        keypoints_metadata=payload.get("keypoints_metadata"),
    )
