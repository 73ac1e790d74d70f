"""Raw tensors, for callers who do their own pre- and post-processing: the model's own input in, and its
outputs out, run by the inference service on the model's session (here, or on a Ray model worker), shape,
datatype and size checked before the data is read.

Names are unique in a model's metadata: a tensor keeps its ONNX name unless the images signature has that
name (`images` for Ultralytics exports, `masks` or `keypoints` for RF-DETR's), then it is listed with `_raw`
appended, its ONNX name in `parameters.onnx_name`. The input may also be named by its ONNX name (its datatype
tells it from the images input), as Triton serving the same file would be called."""

from __future__ import annotations

import numpy as np

from visionserve.api.oip import images
from visionserve.api.oip.schemas import RequestInput, TensorMetadata
from visionserve.api.oip.tensors import datatype_of
from visionserve.core import InferenceService, too_many_images
from visionserve.errors import InvalidRequestError, PayloadTooLargeError
from visionserve.models.loader import LoadedModel
from visionserve.runtime.onnx_model import OnnxModel

SIGNATURE = {"signature": "tensors"}
OUTPUT_DATATYPE = "FP32"  # the runner answers every output as float32
CLASHING_NAME_SUFFIX = "_raw"


def _axes(shape: list[object]) -> list[int]:
    return [axis if isinstance(axis, int) and axis > 0 else -1 for axis in shape]


def _listed(name: str, taken: set[str]) -> str:
    while name in taken:
        name += CLASHING_NAME_SUFFIX
    taken.add(name)
    return name


def input_name(model: LoadedModel) -> str:
    return _listed(model.predictor.runner.input_name, {images.IMAGES_INPUT})


def output_names(model: LoadedModel) -> dict[str, str]:
    """ONNX name → listed name, in the model's order."""
    taken = {tensor.name for tensor in images.output_metadata(model)}
    return {name: _listed(name, taken) for name in model.predictor.runner.output_names}


def input_datatype(runner: OnnxModel) -> str:
    return datatype_of(np.empty(0, dtype=runner.input_dtype))


def accepts(model: LoadedModel, declared: RequestInput) -> bool:
    runner = model.predictor.runner
    names = (input_name(model), runner.input_name)
    return declared.datatype == input_datatype(runner) and declared.name in names


def _described(onnx_name: str, description: str) -> dict[str, str]:
    return {**SIGNATURE, "onnx_name": onnx_name, "description": description}


def input_metadata(model: LoadedModel) -> TensorMetadata:
    runner = model.predictor.runner
    return TensorMetadata(
        name=input_name(model),
        datatype=input_datatype(runner),
        shape=_axes(runner.input_shape),
        parameters=_described(runner.input_name, "The model's own input, [batch, channels, height, width]."),
    )


def output_metadata(model: LoadedModel) -> list[TensorMetadata]:
    listed = output_names(model)
    return [
        TensorMetadata(
            name=listed[output.name],
            datatype=OUTPUT_DATATYPE,
            shape=_axes(list(output.shape)),
            parameters=_described(output.name, "The model's own output."),
        )
        for output in model.predictor.runner.session.get_outputs()
    ]


def check_shape(model: LoadedModel, declared: RequestInput, max_batch: int, max_image_pixels: int) -> None:
    """Before its data is read: the shape fits the model's input, each image the image pixel limit, and all
    of them one forward pass of the images signature (its batch of the model's input size), a known cost."""
    predictor, shape = model.predictor, declared.shape
    expected = _axes(predictor.runner.input_shape)
    fits = len(shape) == len(expected) and all(
        axis == wanted if wanted > 0 else axis > 0 for axis, wanted in zip(shape, expected)
    )
    if not fits:
        raise InvalidRequestError(
            f"Input {declared.name!r} must have shape {expected} (-1: any size from 1), not {shape}."
        )
    batch, height, width = shape[0], shape[-2], shape[-1]
    if batch > max_batch:
        raise too_many_images(batch, max_batch)
    if height * width > max_image_pixels:
        raise PayloadTooLargeError(
            f"Input {declared.name!r} holds images of {width}x{height} pixels, more than the limit of "
            f"{max_image_pixels} pixels (VISIONSERVE_MAX_IMAGE_PIXELS)."
        )
    pass_images = predictor.runner.batch_size or predictor.max_batch_size
    input_height, input_width = predictor.input_hw
    most = pass_images * input_height * input_width
    if batch * height * width > most:
        raise PayloadTooLargeError(
            f"Input {declared.name!r} of shape {shape} holds {batch * height * width} pixels, more than one "
            f"forward pass of this model takes: {pass_images} x {input_height}x{input_width} = {most} "
            "(VISIONSERVE_MAX_BATCH_SIZE images of the model's input size)."
        )


def run_raw(
    service: InferenceService, model: LoadedModel, batch: np.ndarray, api_key: str | None
) -> dict[str, np.ndarray]:
    """The model's outputs by listed name, from wherever the service runs its models (here, or a Ray worker)."""
    outputs = service.run_tensor(model.model_id, api_key, batch)
    listed = output_names(model)
    return {listed[name]: values for name, values in zip(model.predictor.runner.output_names, outputs)}
