"""A run's `inputs` → values for the plan: images decoded (with the server's image limits), batches of one
broadcast to the run's batch size, parameters defaulted."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from visionserve.images.decode import DecodedImage
from visionserve.images.sources import DECODED, ImageSpec
from visionserve.runtime.parallel import cpu_map
from visionserve.workflows.definition import ImageInput, ParameterInput, VideoMetadataInput, WorkflowInput
from visionserve.workflows.errors import RuntimeInputError
from visionserve.workflows.values import WorkflowImage

LoadImage = Callable[[ImageSpec], DecodedImage]


@dataclass(frozen=True)
class RunInputs:
    batch_size: int  # elements of the input batch (1 when the workflow has no batch input)
    batches: dict[str, list[Any]]  # batch input → one value per element
    scalars: dict[str, Any]  # parameter → its value


def _image_spec(name: str, value: object) -> ImageSpec:
    if isinstance(value, str):  # a bare string: a URL or base64, as the reference accepts
        return ImageSpec("url" if value.startswith(("http://", "https://")) else "base64", value)
    if not isinstance(value, Mapping) or "type" not in value or "value" not in value:
        raise RuntimeInputError(
            f"Input {name!r} must be an image: {{\"type\": \"base64\" | \"url\", \"value\": ...}}, or a list of them."
        )
    kind = str(value["type"]).lower()
    if kind == "numpy_object":  # a decoded frame handed over in-process (stream pipelines), as the reference does
        if not isinstance(value["value"], np.ndarray):
            raise RuntimeInputError(f"Input {name!r}: a numpy_object image is only for frames passed in-process.")
        return ImageSpec(DECODED, value["value"])
    if kind not in ("base64", "url", "numpy"):
        raise RuntimeInputError(f"Input {name!r} has image type {value['type']!r}; use 'base64' or 'url'.")
    return ImageSpec(kind, value["value"])


def _as_batch(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def resolve_inputs(
    declared: Mapping[str, WorkflowInput], given: Mapping[str, Any], load: LoadImage, max_images: int
) -> RunInputs:
    """Every declared input's value; a missing batch input, batches of different sizes, or more images than
    `max_images` (VISIONSERVE_MAX_BATCH_IMAGES) are 400s naming the input."""
    raw_batches: dict[str, list[Any]] = {}
    scalars: dict[str, Any] = {}
    for name, spec in declared.items():
        if isinstance(spec, ParameterInput):
            scalars[name] = given[name] if name in given and given[name] is not None else spec.default_value
            continue
        if name not in given or given[name] is None:
            raise RuntimeInputError(f"The workflow needs input {name!r}, and the request has none.")
        raw_batches[name] = _as_batch(given[name])
        if not raw_batches[name]:
            raise RuntimeInputError(f"Input {name!r} is an empty list.")
    sizes = {len(values) for values in raw_batches.values()} - {1}
    if len(sizes) > 1:
        described = ", ".join(f"{name}: {len(values)}" for name, values in raw_batches.items())
        raise RuntimeInputError(f"Batch inputs must have the same length (or length 1); got {described}.")
    batch_size = sizes.pop() if sizes else 1
    batches = {}
    for name, values in raw_batches.items():
        spec = declared[name]
        if isinstance(spec, ImageInput):
            if len(values) > max_images:
                raise RuntimeInputError(
                    f"Input {name!r} has {len(values)} images, the limit is {max_images} "
                    "(VISIONSERVE_MAX_BATCH_IMAGES)."
                )
            values = _images(name, values, load)
        elif isinstance(spec, VideoMetadataInput) and not all(isinstance(value, Mapping) for value in values):
            raise RuntimeInputError(f"Input {name!r} must be video metadata: a JSON object (or a list of them).")
        batches[name] = values * batch_size if len(values) == 1 else values
    return RunInputs(batch_size, batches, scalars)


def _images(name: str, values: list[Any], load: LoadImage) -> list[WorkflowImage]:
    specs = [_image_spec(name, value) for value in values]
    decoded = cpu_map(load, specs)
    ids = [name] if len(specs) == 1 else [f"{name}.[{index}]" for index in range(len(specs))]
    metadata = [value.get("video_metadata") if isinstance(value, Mapping) else None for value in values]
    if any(meta is not None and not isinstance(meta, Mapping) for meta in metadata):
        raise RuntimeInputError(f"Input {name!r}: an image's video_metadata must be a JSON object.")
    return [WorkflowImage.input(image.pixels, image_id, meta) for image, image_id, meta in zip(decoded, ids, metadata)]


def attach_video_metadata(inputs: RunInputs, declared: Mapping[str, WorkflowInput]) -> RunInputs:
    """Images carry the run's video metadata (the first such input), as frames of a video do."""
    names = [name for name, spec in declared.items() if isinstance(spec, VideoMetadataInput)]
    if not names:
        return inputs
    metadata = inputs.batches[names[0]]
    batches = {
        name: [replace(image, video_metadata=meta) for image, meta in zip(values, metadata)]
        if isinstance(declared[name], ImageInput) else values
        for name, values in inputs.batches.items()
    }  # fmt: skip
    return RunInputs(inputs.batch_size, batches, inputs.scalars)
