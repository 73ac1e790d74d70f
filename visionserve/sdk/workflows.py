"""Workflow runs from the client, as the reference client makes them: which route, the request body (images as
base64, nested lists kept, parameters merged into `inputs`), and the answer's images decoded into the configured
format. Kept apart from `client.py` so the wire shape is in one place."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from visionserve.sdk.errors import InvalidParameterError

EncodeImage = Callable[[object], str]  # one image reference → its base64


@dataclass(frozen=True)
class WorkflowCall:
    """One `run_workflow` call: a workflow named (`workspace_name` + `workflow_id`) or given (`specification`)."""

    workspace_name: str | None
    workflow_id: str | None
    specification: dict[str, Any] | None
    images: Mapping[str, Any] | None
    parameters: Mapping[str, Any] | None
    excluded_fields: list[str] | None
    use_cache: bool
    enable_profiling: bool
    workflow_version_id: str | None
    disable_sinks: bool

    def __post_init__(self) -> None:
        named = self.workspace_name is not None and self.workflow_id is not None
        if named == (self.specification is not None):
            raise InvalidParameterError(
                "Name a saved workflow (workspace_name and workflow_id, or workflow_name) or give its specification: "
                "one of the two, they are mutually exclusive."
            )

    def path(self, legacy: bool) -> str:
        """`/workflows/run` for a definition given inline, the saved route for a named one; `legacy`: the
        `/infer/workflows` spellings (`infer_from_workflow`)."""
        if self.specification is not None:
            return "/infer/workflows" if legacy else "/workflows/run"
        if legacy:
            return f"/infer/workflows/{self.workspace_name}/{self.workflow_id}"
        return f"/{self.workspace_name}/workflows/{self.workflow_id}"

    def payload(self, api_key: str | None, encode_image: EncodeImage) -> dict[str, Any]:
        """The request body; optional fields only when set, as the reference client sends them."""
        inputs = {name: _images_payload(value, encode_image) for name, value in (self.images or {}).items()}
        inputs.update(self.parameters or {})
        body: dict[str, Any] = {
            "api_key": api_key, "use_cache": self.use_cache, "enable_profiling": self.enable_profiling,
        }  # fmt: skip
        if self.disable_sinks:
            body["disable_sinks"] = True
        body["inputs"] = inputs
        if self.excluded_fields is not None:
            body["excluded_fields"] = self.excluded_fields
        if self.specification is not None:
            body["specification"] = self.specification
        elif self.workflow_version_id is not None:
            body["workflow_version_id"] = self.workflow_version_id
        return body


def _images_payload(value: object, encode_image: EncodeImage) -> Any:
    """An image reference → `{"type": "base64", "value": ...}`; a (nested) list keeps its shape."""
    if isinstance(value, (list, tuple)):
        return [_images_payload(item, encode_image) for item in value]
    return {"type": "base64", "value": encode_image(value)}


def decode_image(text: str, output_format: str) -> Any:
    """A base64 image as the configured `output_visualisation_format`: the text itself, a BGR array, or PIL."""
    if output_format == "base64":
        return text
    array = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_COLOR)
    if output_format == "pillow":
        from PIL import Image

        return Image.fromarray(cv2.cvtColor(array, cv2.COLOR_BGR2RGB))
    return array


def _decoded(value: Any, output_format: str) -> Any:
    if isinstance(value, dict):
        if value.get("type") == "base64":  # the reference client's test: any such dict is an image
            return decode_image(value["value"], output_format)
        return {key: _decoded(item, output_format) for key, item in value.items()}
    if isinstance(value, list):
        return [_decoded(item, output_format) for item in value]
    return value


def decode_outputs(outputs: list[dict[str, Any]], output_format: str) -> list[dict[str, Any]]:
    """The answer's `outputs`, every image (at any depth under an output) decoded."""
    return [{name: _decoded(value, output_format) for name, value in output.items()} for output in outputs]


def save_profiler_trace(directory: str, trace: list[dict[str, Any]] | None) -> Path:
    """Write the trace where the reference client does, under the same file name pattern."""
    folder = Path(directory).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"workflow_execution_tack_{datetime.now():%Y_%m_%d_%H_%M_%S}.json"
    path.write_text(json.dumps(trace or []))
    return path
