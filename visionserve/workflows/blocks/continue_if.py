"""Continue if: per element, the steps in `next_steps` run only where the condition holds; elsewhere they (and
what depends on them) are skipped, and their outputs are null."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, StepContext, StepInputs, per_element, selector, step_selector,
)  # fmt: skip
from visionserve.workflows.operations.evaluate import evaluate
from visionserve.workflows.operations.language import StatementGroup
from visionserve.workflows.selectors import parse_selector


class ContinueIfManifest(BlockManifest):
    type: Literal["roboflow_core/continue_if@v1", "ContinueIf"]
    condition_statement: StatementGroup
    evaluation_parameters: dict[str, selector(kinds.WILDCARD)] = Field(default_factory=dict)  # type: ignore[valid-type]
    next_steps: list[step_selector()] = Field(min_length=1)  # type: ignore[valid-type]
    stop_delay: float = Field(0.0, ge=0, description="Accepted for compatibility; has no effect on single runs.")


def decide(step: ContinueIfManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    go = evaluate(step.condition_statement, inputs["evaluation_parameters"])
    return {"next_steps": [parse_selector(text).name for text in step.next_steps] if go else []}


BLOCK = BlockSpec(ContinueIfManifest, (), per_element(decide), flow_control=True, human_name="Continue If")
