"""A workflow definition as the reference writes it: version, inputs, steps, outputs.

Steps stay dicts here: each is validated by its own block's manifest in the compiler, so errors name the step.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visionserve.workflows import kinds
from visionserve.workflows.errors import WorkflowSyntaxError

_NAME = r"^[A-Za-z0-9_-]+$"


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=_NAME)


class ImageInput(_Input):
    type: Literal["WorkflowImage", "InferenceImage"]
    kind: list[str] = Field(default_factory=lambda: [kinds.IMAGE])


class VideoMetadataInput(_Input):
    type: Literal["WorkflowVideoMetadata"]
    kind: list[str] = Field(default_factory=lambda: [kinds.VIDEO_METADATA])


class BatchInput(_Input):
    type: Literal["WorkflowBatchInput"]
    kind: list[str] = Field(default_factory=lambda: [kinds.WILDCARD])
    dimensionality: Literal[1] = Field(1, description="Only flat batches (1) are served so far.")


class ParameterInput(_Input):
    type: Literal["WorkflowParameter", "InferenceParameter"]
    kind: list[str] = Field(default_factory=lambda: [kinds.WILDCARD])
    default_value: Any = None


WorkflowInput = Annotated[
    Union[ImageInput, VideoMetadataInput, BatchInput, ParameterInput], Field(discriminator="type")
]
BATCH_INPUTS = (ImageInput, VideoMetadataInput, BatchInput)


class JsonField(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["JsonField"] = "JsonField"
    name: str
    selector: str
    coordinates_system: Literal["own", "parent"] = "parent"


class Definition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str = "1.0"
    inputs: list[WorkflowInput]
    steps: list[dict[str, Any]]
    outputs: list[JsonField]


def parse_definition(raw: object) -> Definition:
    """The definition, or a 400 naming the first thing wrong with it."""
    if not isinstance(raw, dict):
        raise WorkflowSyntaxError("A workflow definition is a JSON object with version, inputs, steps and outputs.")
    try:
        definition = Definition.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise WorkflowSyntaxError(f"The workflow definition is invalid at {where}: {first['msg']}.") from None
    major = definition.version.split(".")[0]
    if major != "1":
        raise WorkflowSyntaxError(
            f"Workflow definition version {definition.version!r} is not supported: this server runs 1.x definitions."
        )
    return definition
