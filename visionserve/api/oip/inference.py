"""One inference request, start to end, in a worker thread: parse the body, load the model, run the signature
the input names (encoded `images` through the core's InferenceService, or the model's own input on its
session), and encode the outputs asked for."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

import numpy as np

from visionserve.api.oip import images, raw
from visionserve.api.oip.compression import inflated
from visionserve.api.oip.metadata import model_inputs
from visionserve.api.oip.names import ModelName
from visionserve.api.oip.schemas import InferRequest
from visionserve.api.oip.tensors import BYTES, Output, Tensor, encode_response, parse_request, read_inputs
from visionserve.core import InferenceService
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
    request, binary = parse_request(
        inflated(call.body, call.content_encoding, max_body_bytes), call.header_length
    )
    inputs = read_inputs(request, binary)
    model = service.manager.get(call.model.model_id, call.api_key)
    request_id = request.id or str(uuid.uuid4())
    produced = _run(service, model, _the_input(model, inputs), request, request_id, call)
    return encode_response(call.model.name, call.model.version, request_id, _selected(produced, request))


def _the_input(model: LoadedModel, inputs: list[Tensor]) -> Tensor:
    accepted = model_inputs(model)
    if len(inputs) == 1 and any(
        (t.name, t.datatype) == (inputs[0].name, inputs[0].datatype) for t in accepted
    ):
        return inputs[0]
    given = ", ".join(f"{tensor.name!r} ({tensor.datatype})" for tensor in inputs) or "none"
    takes = " or ".join(f"{tensor.name!r} ({tensor.datatype} {tensor.shape})" for tensor in accepted)
    raise InvalidRequestError(f"This model takes one input, {takes}; the request has {given}.")


def _run(
    service: InferenceService,
    model: LoadedModel,
    tensor: Tensor,
    request: InferRequest,
    request_id: str,
    call: ProtocolCall,
) -> dict[str, np.ndarray]:
    if tensor.name == images.IMAGES_INPUT and tensor.datatype == BYTES:
        job = images.images_job(model, tensor, request.parameters, request_id, call.api_key, call.cancelled)
        return images.prediction_outputs(model, service.run(job))
    return raw.run_raw(model, raw.checked_batch(model, tensor, service.max_batch_images))


def _selected(produced: dict[str, np.ndarray], request: InferRequest) -> list[Output]:
    """The outputs asked for (all when none are named), each in binary if asked so, else in JSON."""
    default_binary = request.parameters.get("binary_data_output") is True
    if request.outputs is None:
        return [Output(name, values, default_binary) for name, values in produced.items()]
    selected = []
    for wanted in request.outputs:
        if wanted.name not in produced:
            raise InvalidRequestError(
                f"Unknown output {wanted.name!r}; this request answers {', '.join(produced)}."
            )
        if "classification" in wanted.parameters or "shared_memory_region" in wanted.parameters:
            raise InvalidRequestError(
                f"Output {wanted.name!r}: the classification and shared-memory extensions are not supported."
            )
        binary = wanted.parameters.get("binary_data", default_binary) is True
        selected.append(Output(wanted.name, produced[wanted.name], binary))
    return selected
