"""Tensors on the wire: an input's values from binary data or JSON `data` (flat or nested), and the response
in the same two forms (the body around them: `visionserve.api.oip.body`).

BYTES elements are length-prefixed in binary data (a little-endian uint32, then the bytes) and strings in
JSON. They stay apart here, bytes from binary data and `str` from JSON, because their meaning differs: an
image file in binary data is its bytes, in JSON its base64 text."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import orjson
from pydantic import ValidationError

from visionserve.api.oip.schemas import InferResponse, RequestInput, ResponseOutput
from visionserve.errors import InvalidRequestError

BYTES = "BYTES"
NUMERIC: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?",
        "UINT8": "<u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "<i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}
_DATATYPE_OF = {dtype: name for name, dtype in NUMERIC.items()}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class Tensor:
    """An input as received: numeric values as an array of its shape; BYTES elements flat, row-major."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes] | list[str]


@dataclass(frozen=True)
class Output:
    """An output to answer: numeric arrays, or BYTES as an object array of `bytes` (UTF-8 text in JSON)."""

    name: str
    values: np.ndarray
    binary: bool


def describe_validation_error(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, detail['loc'])) or 'body'}: {detail['msg']}"
        for detail in error.errors(include_url=False)
    )


def element_count(declared: RequestInput) -> int:
    """How many elements the shape holds (its rank and axes are bounded by the schema, so this is cheap)."""
    return math.prod(declared.shape)


def read_input(declared: RequestInput, binary: memoryview) -> Tensor:
    """The input's values, from the binary data after the JSON (all of it) or from its JSON `data`."""
    count = element_count(declared)
    size = declared.parameters.get("binary_data_size")
    if "shared_memory_region" in declared.parameters:
        raise InvalidRequestError(
            "Shared memory is not supported by this server: send the data in the request."
        )
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
            raise InvalidRequestError(
                f"Input {declared.name!r}: binary_data_size {size!r} is not the {len(binary)} bytes "
                "of binary data after the JSON."
            )
        values = _from_binary(declared, count, binary)
    elif len(binary):
        raise InvalidRequestError(f"{len(binary)} bytes of binary data belong to no input.")
    elif declared.data is not None:
        values = _from_json(declared, count)
    else:
        raise InvalidRequestError(f"Input {declared.name!r} has neither `data` nor `binary_data_size`.")
    return Tensor(declared.name, declared.datatype, tuple(declared.shape), values)


def _from_binary(declared: RequestInput, count: int, data: memoryview) -> np.ndarray | list[bytes]:
    if declared.datatype == BYTES:
        return _split_bytes(declared, count, data)
    dtype = NUMERIC[declared.datatype]
    if len(data) != count * dtype.itemsize:
        raise InvalidRequestError(
            f"Input {declared.name!r}: shape {declared.shape} of {declared.datatype} takes "
            f"{count * dtype.itemsize} bytes, binary_data_size is {len(data)}."
        )
    return np.frombuffer(data, dtype=dtype).reshape(declared.shape)


def _split_bytes(declared: RequestInput, count: int, data: memoryview) -> list[bytes]:
    """The `count` elements, stopping at the first one too many: millions of empty ones cost nothing."""
    name, elements, offset = declared.name, [], 0
    while offset < len(data):
        if len(elements) == count:
            raise InvalidRequestError(
                f"Input {name!r}: shape {declared.shape} holds {count} elements, the data more."
            )
        if offset + _LENGTH.size > len(data):
            raise InvalidRequestError(f"Input {name!r}: BYTES data ends inside an element's length.")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise InvalidRequestError(f"Input {name!r}: a BYTES element is longer than the data left.")
        elements.append(bytes(data[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise InvalidRequestError(
            f"Input {name!r}: shape {declared.shape} holds {count} elements, the data {len(elements)}."
        )
    return elements


def _from_json(declared: RequestInput, count: int) -> np.ndarray | list[str]:
    if declared.datatype == BYTES:
        elements = _flatten(declared.data)
        if not all(isinstance(element, str) for element in elements):
            raise InvalidRequestError(f"Input {declared.name!r}: BYTES elements in JSON must be strings.")
        values: np.ndarray | list[str] = elements
        found = len(elements)
    else:
        try:
            values = np.asarray(declared.data, dtype=NUMERIC[declared.datatype])
        except (ValueError, TypeError, OverflowError):
            raise InvalidRequestError(
                f"Input {declared.name!r}: `data` is not an array of {declared.datatype} values."
            ) from None
        found = values.size
    if found != count:
        raise InvalidRequestError(
            f"Input {declared.name!r}: shape {declared.shape} holds {count} elements, the data {found}."
        )
    return values if isinstance(values, list) else values.reshape(declared.shape)


def _flatten(data: object) -> list[object]:
    if not isinstance(data, list):
        return [data]
    return [element for item in data for element in _flatten(item)]


def bytes_array(elements: list[bytes]) -> np.ndarray:
    """A BYTES output's values."""
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array


def datatype_of(values: np.ndarray) -> str:
    return BYTES if values.dtype == object else _DATATYPE_OF[values.dtype.newbyteorder("<")]


def encode_response(
    model_name: str, model_version: str | None, request_id: str, outputs: list[Output]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary data follows it."""
    described, chunks = [], []
    for output in outputs:
        shape, datatype = list(output.values.shape), datatype_of(output.values)
        if output.binary:
            chunk = _binary(output.values)
            chunks.append(chunk)
            described.append(
                ResponseOutput(
                    name=output.name,
                    shape=shape,
                    datatype=datatype,
                    parameters={"binary_data_size": len(chunk)},
                )
            )
        else:
            described.append(
                ResponseOutput(
                    name=output.name, shape=shape, datatype=datatype, data=_json_data(output.values)
                )
            )
    response = InferResponse(
        model_name=model_name, model_version=model_version, id=request_id, outputs=described
    )
    header = orjson.dumps(response.model_dump(exclude_none=True), option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _binary(values: np.ndarray) -> bytes:
    if values.dtype == object:
        return b"".join(_LENGTH.pack(len(element)) + element for element in values.ravel())
    return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()


def _json_data(values: np.ndarray) -> np.ndarray | list[str]:
    if values.dtype == object:
        return [element.decode("utf-8") for element in values.ravel()]
    return np.ascontiguousarray(values).ravel()
