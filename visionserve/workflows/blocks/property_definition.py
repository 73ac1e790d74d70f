"""Property definition: a value computed from another by the operation language (a count, a class list...)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.operations.evaluate import apply_all
from visionserve.workflows.operations.language import Operation


class PropertyDefinitionManifest(BlockManifest):
    type: Literal["roboflow_core/property_definition@v1", "PropertyDefinition", "PropertyExtraction"]
    data: selector(kinds.WILDCARD)  # type: ignore[valid-type]
    operations: list[Operation] = Field(min_length=1, max_length=64)


def define(step: PropertyDefinitionManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    return {"output": apply_all(inputs["data"], step.operations, {})}


BLOCK = BlockSpec(
    PropertyDefinitionManifest, (Output("output", (kinds.WILDCARD,)),), per_element(define),
    human_name="Property Definition",
)  # fmt: skip
