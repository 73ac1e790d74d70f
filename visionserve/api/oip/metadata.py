"""What the server and each model say about themselves: the images signature and the model's own tensors, side
by side, each tensor marked with its signature."""

from __future__ import annotations

import orjson

from visionserve import __version__
from visionserve.api.oip import images, raw
from visionserve.api.oip.names import ModelName
from visionserve.api.oip.schemas import ModelMetadata, ServerMetadata, TensorMetadata
from visionserve.models.loader import LoadedModel

EXTENSIONS = ["binary_tensor_data", "parameters"]
PLATFORM = "onnxruntime_onnx"


def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="visionserve", version=__version__, extensions=EXTENSIONS)


def model_inputs(model: LoadedModel) -> list[TensorMetadata]:
    return [images.input_metadata(), raw.input_metadata(model)]


def model_metadata(name: ModelName, model: LoadedModel) -> ModelMetadata:
    return ModelMetadata(
        name=name.name,
        versions=None if name.version is None else [name.version],
        platform=PLATFORM,
        parameters={
            "model_id": model.model_id,
            "task": model.task.value,
            "class_names": orjson.dumps(model.predictor.class_names).decode(),
            "input_height": model.predictor.input_hw[0],  # what the images signature resizes to
            "input_width": model.predictor.input_hw[1],
            "options": ", ".join(images.options_of(model.task)),
        },
        inputs=model_inputs(model),
        outputs=[*images.output_metadata(model), *raw.output_metadata(model)],
    )
