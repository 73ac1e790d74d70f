"""One inference request, start to end, in a worker thread: parse the body, load the model, check what the
request declares against the signature its input names (encoded `images` through the core's InferenceService,
or the model's own input on its session) before any data is read, run it, and encode the outputs asked for."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

import numpy as np

from visionserve.api.oip import images, raw
from visionserve.api.oip.body import parse_request, unpacked
from visionserve.api.oip.metadata import model_inputs
from visionserve.api.oip.names import ModelName
from visionserve.api.oip.schemas import InferRequest, RequestInput
from visionserve.api.oip.tensors import BYTES, Output, element_count, encode_response, read_input
from visionserve.core import InferenceService, too_many_images
from visionserve.errors import InvalidRequestError
from visionserve.models.loader import LoadedModel


@dataclass(frozen=True)
class ProtocolCall:
    """What the HTTP layer hands over: the model asked for, the body as received, the caller's situation."""

    model: ModelName
    body: bytes
    header_length: str | None  # Inference-Header-Content-Length
    content_encoding: str | None
    api_key: str | None  # only ever forwarded to the weights API
    cancelled: threading.Event


def infer(service: InferenceService, call: ProtocolCall, max_body_bytes: int) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON header when binary data follows."""
    body = unpacked(call.body, call.content_encoding, call.header_length, max_body_bytes)
    request, binary = parse_request(body, call.header_length)
    model = service.manager.get(call.model.model_id, call.api_key)
    declared = _the_input(model, request.inputs)
    is_images = _is_images(declared)
    wanted = _wanted_outputs(request, _output_names(model, is_images))
    if is_images:
        if (count := element_count(declared)) > service.max_batch_images:
            raise too_many_images(count, service.max_batch_images)
    else:
        raw.check_shape(model, declared, service.max_batch_images, service.images.limits.max_pixels)
    tensor = read_input(declared, binary)
    request_id = request.id or str(uuid.uuid4())
    if is_images:
        job = images.images_job(model, tensor, request.parameters, request_id, call.api_key, call.cancelled)
        produced = images.prediction_outputs(model, service.run(job))
    else:
        assert isinstance(tensor.values, np.ndarray)
        produced = raw.run_raw(service, model, tensor.values, call.api_key)
    outputs = [Output(name, produced[name], binary) for name, binary in wanted]
    return encode_response(call.model.name, call.model.version, request_id, outputs)


def _is_images(declared: RequestInput) -> bool:
    return declared.name == images.IMAGES_INPUT and declared.datatype == BYTES


def _the_input(model: LoadedModel, inputs: list[RequestInput]) -> RequestInput:
    if len(inputs) == 1 and (_is_images(inputs[0]) or raw.accepts(model, inputs[0])):
        return inputs[0]
    given = ", ".join(f"{tensor.name!r} ({tensor.datatype})" for tensor in inputs) or "none"
    accepted = model_inputs(model)
    takes = " or ".join(f"{tensor.name!r} ({tensor.datatype} {tensor.shape})" for tensor in accepted)
    raise InvalidRequestError(f"This model takes one input, {takes}; the request has {given}.")


def _output_names(model: LoadedModel, is_images: bool) -> list[str]:
    if is_images:
        return [tensor.name for tensor in images.output_metadata(model)]
    return list(raw.output_names(model).values())


def _wanted_outputs(request: InferRequest, names: list[str]) -> list[tuple[str, bool]]:
    """(name, in binary) of each output asked for, once each (all when none are named), before the run."""
    default_binary = request.parameters.get("binary_data_output") is True
    if request.outputs is None:
        return [(name, default_binary) for name in names]
    if len(request.outputs) > len(names):
        raise InvalidRequestError(
            f"The request names {len(request.outputs)} outputs; this one answers {len(names)}: "
            f"{', '.join(names)}."
        )
    wanted: dict[str, bool] = {}
    for output in request.outputs:
        if output.name not in names:
            raise InvalidRequestError(
                f"Unknown output {output.name!r}; this request answers {', '.join(names)}."
            )
        if "classification" in output.parameters or "shared_memory_region" in output.parameters:
            raise InvalidRequestError(
                f"Output {output.name!r}: the classification and shared-memory extensions are not supported."
            )
        wanted.setdefault(output.name, output.parameters.get("binary_data", default_binary) is True)
    return list(wanted.items())
