"""The request body: a JSON header, then the binary data of the inputs that declare a `binary_data_size`
(`Inference-Header-Content-Length` says where the JSON ends).

The JSON is bounded before a single object is built: by its size, then by how many values and how many
arrays and objects it holds, counted on the bytes (base64 text holds none of `,[{`). Parsing builds Python
objects while holding the GIL, so an unbounded JSON body would stall every thread, the event loop and
`/healthz` included, however far off the event loop it is parsed. Large tensors belong in binary data, which
only the body limit bounds.
"""

from __future__ import annotations

import re

import orjson
from pydantic import ValidationError

from visionserve.api.oip.compression import inflated
from visionserve.api.oip.schemas import InferRequest
from visionserve.api.oip.tensors import BYTES, NUMERIC, describe_validation_error
from visionserve.errors import InvalidRequestError, PayloadTooLargeError

MAX_JSON_BYTES = 32 * 1024 * 1024  # tritonclient writes a float32 in up to 20 characters
MAX_JSON_VALUES = 2**21  # a [1, 3, 640, 640] tensor in JSON has 1.2 million
MAX_JSON_CONTAINERS = 2**14  # arrays and objects: a nested [1, 3, 640, 640] tensor has 1,925
BINARY_HINT = "send tensors as binary data (Inference-Header-Content-Length)"
_HEADER_LENGTH = re.compile(r"[0-9]{1,19}")  # ASCII digits only: int() also takes "²"-like and non-ASCII ones


def unpacked(body: bytes, encoding: str | None, header_length: str | None, max_body_bytes: int) -> bytes:
    """The body inflated: up to the body limit when binary data follows the JSON, else up to the JSON's."""
    if header_length is not None:
        return inflated(body, encoding, max_body_bytes, "VISIONSERVE_MAX_BODY_BYTES")
    limit = min(MAX_JSON_BYTES, max_body_bytes)
    return inflated(body, encoding, limit, f"the limit of a JSON body; {BINARY_HINT}")


def parse_request(body: bytes, header_length: str | None) -> tuple[InferRequest, memoryview]:
    """The JSON header, validated, and the binary data after it."""
    size = _json_length(body, header_length)
    _check_json_bounds(body, size)
    try:
        parsed = orjson.loads(memoryview(body)[:size])
    except orjson.JSONDecodeError as error:
        raise InvalidRequestError(f"The inference request is not valid JSON: {error}.") from None
    try:
        request = InferRequest.model_validate(parsed)
    except ValidationError as error:
        raise InvalidRequestError(
            f"The inference request is not valid: {describe_validation_error(error)}"
        ) from None
    for declared in request.inputs:
        if declared.datatype != BYTES and declared.datatype not in NUMERIC:
            raise InvalidRequestError(
                f"Input {declared.name!r}: unknown datatype {declared.datatype!r}; "
                f"use one of {', '.join([*NUMERIC, BYTES])}."
            )
    return request, memoryview(body)[size:]


def _json_length(body: bytes, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    if not _HEADER_LENGTH.fullmatch(header_length.strip()) or int(header_length) > len(body):
        raise InvalidRequestError(
            f"Inference-Header-Content-Length must be a length between 0 and the body's {len(body)} bytes."
        )
    return int(header_length)


def _check_json_bounds(body: bytes, size: int) -> None:
    if size > MAX_JSON_BYTES:
        raise PayloadTooLargeError(
            f"The request's JSON is {size} bytes, more than the {MAX_JSON_BYTES} a JSON header may take; "
            f"{BINARY_HINT}."
        )
    if body.count(b"[", 0, size) + body.count(b"{", 0, size) > MAX_JSON_CONTAINERS:
        raise PayloadTooLargeError(
            f"The request's JSON holds more than {MAX_JSON_CONTAINERS} arrays and objects; send tensor data "
            f"flat, or {BINARY_HINT}."
        )
    if body.count(b",", 0, size) + 1 > MAX_JSON_VALUES:
        raise PayloadTooLargeError(
            f"The request's JSON holds more than {MAX_JSON_VALUES} values; {BINARY_HINT}."
        )
