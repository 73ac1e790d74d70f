"""The protocol's JSON objects, as KServe's "predict-api v2" and Triton's HTTP protocol define them.

Unknown fields are ignored, so clients that send more (Triton's sequence and priority fields) keep working.
A shape is bounded in rank and in each axis before its axes are validated, and so before any arithmetic on it
(Triton's and KServe's clients send a handful of axes, each an int64).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

Parameters = dict[str, Any]
MAX_RANK = 8
Axis = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]


class Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class RequestInput(Loose):
    name: str
    shape: list[Axis] = Field(
        description=f"Every axis a size, 0 or more; at most {MAX_RANK} axes.", json_schema_extra={"maxItems": MAX_RANK}
    )
    datatype: str = Field(description="BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64 or BYTES.")
    parameters: Parameters = Field(default_factory=dict, description="`binary_data_size` for binary data.")
    data: Any = Field(
        None, description="The elements in row-major order, flat or nested; absent for binary data."
    )

    @field_validator("shape", mode="before")
    @classmethod
    def _bounded_rank(cls, shape: object) -> object:
        """Checked before the axes are: a shape of millions of axes is refused without reading them."""
        if isinstance(shape, list) and len(shape) > MAX_RANK:
            raise ValueError(f"a shape has at most {MAX_RANK} axes, not {len(shape)}")
        return shape


class RequestOutput(Loose):
    name: str
    parameters: Parameters = Field(
        default_factory=dict, description="`binary_data`: answer this one in binary."
    )


class InferRequest(Loose):
    id: str | None = Field(None, description="Echoed in the response.")
    parameters: Parameters = Field(
        default_factory=dict,
        description="Task options (confidence, iou_threshold, ...) and `binary_data_output`.",
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(None, description="The outputs to answer; all when absent.")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        None, description="`binary_data_size` when the data follows in binary."
    )
    data: Any = Field(None, description="The elements, flat, in row-major order; absent for binary data.")


class InferResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str | None = None
    id: str
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for an axis of variable size.")
    parameters: Parameters = Field(
        description="`signature`: `images` (encoded images in, predictions out) or `tensors` (the model's "
        "own), and a `description`."
    )


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] | None = None
    platform: str
    parameters: Parameters = Field(
        description="The visionserve model id, task, class names (a JSON list), options."
    )
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ProtocolError(BaseModel):
    error: str
