"""Raw tensors, for callers who do their own pre- and post-processing: the model's own input in, by its ONNX
name, and its outputs out by theirs, run on the loaded model's session (shape and datatype checked first)."""

from __future__ import annotations

import numpy as np

from visionserve.api.oip.schemas import TensorMetadata
from visionserve.api.oip.tensors import Tensor, datatype_of
from visionserve.errors import InvalidRequestError
from visionserve.models.loader import LoadedModel
from visionserve.observe import note_model, timed
from visionserve.runtime.onnx_model import RUNTIME_ERRORS, OnnxModel

SIGNATURE = {"signature": "tensors"}
OUTPUT_DATATYPE = "FP32"  # the runner answers every output as float32


def _axes(shape: list[object]) -> list[int]:
    return [axis if isinstance(axis, int) and axis > 0 else -1 for axis in shape]


def input_datatype(runner: OnnxModel) -> str:
    return datatype_of(np.empty(0, dtype=runner.input_dtype))


def input_metadata(model: LoadedModel) -> TensorMetadata:
    runner = model.predictor.runner
    return TensorMetadata(
        name=runner.input_name,
        datatype=input_datatype(runner),
        shape=_axes(runner.input_shape),
        parameters={**SIGNATURE, "description": "The model's own input, [batch, channels, height, width]."},
    )


def output_metadata(model: LoadedModel) -> list[TensorMetadata]:
    return [
        TensorMetadata(
            name=output.name,
            datatype=OUTPUT_DATATYPE,
            shape=_axes(list(output.shape)),
            parameters={**SIGNATURE, "description": "The model's own output."},
        )
        for output in model.predictor.runner.session.get_outputs()
    ]


def checked_batch(model: LoadedModel, tensor: Tensor, max_batch: int) -> np.ndarray:
    """The input's values, once its shape fits the model's input (its datatype was matched by the caller)."""
    expected = _axes(model.predictor.runner.input_shape)
    fits = len(tensor.shape) == len(expected) and all(
        axis == wanted if wanted > 0 else axis > 0 for axis, wanted in zip(tensor.shape, expected)
    )
    if not fits:
        raise InvalidRequestError(
            f"Input {tensor.name!r} must have shape {expected} (-1: any size from 1), "
            f"not {list(tensor.shape)}."
        )
    if tensor.shape[0] > max_batch:
        raise InvalidRequestError(
            f"Too many images in one request: {tensor.shape[0]}, the limit is {max_batch} "
            "(VISIONSERVE_MAX_BATCH_IMAGES)."
        )
    assert isinstance(tensor.values, np.ndarray)
    return tensor.values


def run_raw(model: LoadedModel, batch: np.ndarray) -> dict[str, np.ndarray]:
    """The model's outputs by name; a tensor the model cannot take is the caller's error (400)."""
    runner = model.predictor.runner
    note_model(model.model_id, [(batch.shape[3], batch.shape[2])] * batch.shape[0])
    try:
        with runner.cores.job(), timed("inference"):  # a job like any other, so lone requests see it as company
            outputs = runner.run(batch, may_widen=True)
    except RUNTIME_ERRORS as error:
        raise InvalidRequestError(f"The model cannot run this tensor: {error}") from None
    return dict(zip(runner.output_names, outputs))
