"""Expression: a value chosen by cases (the first whose condition holds, else the default), each condition and
result written in the operation language over the named `data`, after each datum's own `data_operations`.
Evaluated by `operations/evaluate.py`: nothing is `eval`-ed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.operations.evaluate import apply_all, evaluate
from visionserve.workflows.operations.language import Operation, StatementGroup


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StaticCaseResult(_Strict):
    type: Literal["StaticCaseResult"]
    value: Any


class DynamicCaseResult(_Strict):
    type: Literal["DynamicCaseResult"]
    parameter_name: str
    operations: list[Operation] = Field(default_factory=list, max_length=64)


CaseResult = Annotated[Union[StaticCaseResult, DynamicCaseResult], Field(discriminator="type")]


class CaseDefinition(_Strict):
    type: Literal["CaseDefinition"] = "CaseDefinition"
    condition: StatementGroup
    result: CaseResult


class CasesDefinition(_Strict):
    type: Literal["CasesDefinition"] = "CasesDefinition"
    cases: list[CaseDefinition] = Field(default_factory=list, max_length=64)
    default: CaseResult


class ExpressionManifest(BlockManifest):
    type: Literal["roboflow_core/expression@v1", "Expression"]
    data: dict[str, selector(kinds.WILDCARD)]  # type: ignore[valid-type]
    data_operations: dict[str, list[Operation]] = Field(default_factory=dict)
    switch: CasesDefinition


def named_values(data: Mapping[str, Any], operations: Mapping[str, list[Any]]) -> dict[str, Any]:
    """Each datum after its own operations (data without operations as given)."""
    unknown = sorted(set(operations) - set(data))
    if unknown:
        raise StepInputError(f"data_operations name {unknown}, which are not in data ({sorted(data)}).")
    return {name: apply_all(value, operations.get(name, ()), data) for name, value in data.items()}


def _result(result: StaticCaseResult | DynamicCaseResult, values: Mapping[str, Any]) -> Any:
    if isinstance(result, StaticCaseResult):
        return result.value
    if result.parameter_name not in values:
        raise StepInputError(f"the result names {result.parameter_name!r}, which is not in data ({sorted(values)}).")
    return apply_all(values[result.parameter_name], result.operations, values)


def express(step: ExpressionManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    values = named_values(inputs["data"], step.data_operations)
    chosen = next((case.result for case in step.switch.cases if evaluate(case.condition, values)), step.switch.default)
    return {"output": _result(chosen, values)}


BLOCK = BlockSpec(ExpressionManifest, (Output("output", (kinds.WILDCARD,)),), per_element(express),
                  human_name="Expression")  # fmt: skip
