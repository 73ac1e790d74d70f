"""Runs a plan: wave by wave (a step's dependencies are in earlier waves), the steps of a wave side by side on the
server's worker threads, each over the flattened batch of its level; then the outputs, one dict per input element.

Elements are addressed by index tuples: `(i,)` for input image i, `(i, j)` for the j-th crop of image i, `()` for
a scalar. A step's element is skipped (its outputs are None) when a batch input of it was skipped or a flow-control
step gating it said no; its descendants are skipped in turn.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from visionserve.errors import ClientClosedRequest, VisionServeError
from visionserve.workflows.blocks.base import StepContext, StepInputs
from visionserve.workflows.compiler import CompiledOutput, CompiledStep, Level, Plan
from visionserve.workflows.errors import WorkflowError
from visionserve.workflows.limits import WorkflowLimits
from visionserve.workflows.profiler import Profiler
from visionserve.workflows.runtime_inputs import RunInputs
from visionserve.workflows.selectors import WILDCARD_OUTPUT, Selector
from visionserve.workflows.serialize import serialised_value

logger = logging.getLogger(__name__)
Index = tuple[int, ...]


class StepFailedError(WorkflowError):
    """A step failed at run time: the cause's own status (a missing model stays a 404), the step named."""

    error_type = "StepExecutionError"
    context = "workflow_execution"

    def __init__(self, message: str, status_code: int, step: CompiledStep) -> None:
        super().__init__(message, step.name, None, step.block.type_id)
        self.status_code = status_code


@dataclass
class RunState:
    """Everything computed so far in one run."""

    inputs: RunInputs
    results: dict[str, dict[Index, dict[str, Any] | None]] = field(default_factory=dict)
    children: dict[str, dict[Index, int]] = field(default_factory=dict)  # +1 step → element → children made

    def indices(self, level: Level) -> list[Index]:
        if level.depth == 0:
            return [()]
        if level.depth == 1:
            return [(index,) for index in range(self.inputs.batch_size)]
        counts = self.children[level.lineage[-1]]
        return [(*parent, j) for parent in self.indices(level.parent()) for j in range(counts.get(parent, 0))]

    def element(self, step: str, index: Index, depth: int) -> dict[str, Any] | None:
        return self.results[step].get(index[:depth])


_SKIPPED = object()


@dataclass(frozen=True)
class Engine:
    plan: Plan
    limits: WorkflowLimits
    context_for: Callable[[str], StepContext]  # the step context (model calls bound to this request) of a step
    executor: Executor | None = None  # None: steps one after another in the calling thread
    cancelled: threading.Event = field(default_factory=threading.Event)
    profiler: Profiler = field(default_factory=lambda: Profiler(False))

    def run(self, inputs: RunInputs) -> RunState:
        state = RunState(inputs)
        for wave in self.plan.order:
            if self.cancelled.is_set():
                raise ClientClosedRequest()
            self._run_wave([self.plan.steps[name] for name in wave], state)
        return state

    def _run_wave(self, steps: list[CompiledStep], state: RunState) -> None:
        """The first step here, the others on the pool; one not started by the time we wait runs here too (so a
        pool whose threads all wait on their own steps never deadlocks)."""
        if self.executor is None or len(steps) == 1:
            for step in steps:
                self._run_step(step, state)
            return
        submitted = [(step, self.executor.submit(contextvars.copy_context().run, self._run_step, step, state))
                     for step in steps[1:]]  # fmt: skip
        self._run_step(steps[0], state)
        for step, future in submitted:
            if future.cancel():
                self._run_step(step, state)
            else:
                future.result()

    def _run_step(self, step: CompiledStep, state: RunState) -> None:
        indices = state.indices(step.level)
        batch: list[StepInputs] = []
        ran: list[Index] = []
        for index in indices:
            inputs = self._inputs(step, index, state)
            if inputs is not _SKIPPED:
                batch.append(inputs)  # type: ignore[arg-type]
                ran.append(index)
        results: dict[Index, dict[str, Any] | None] = dict.fromkeys(indices)
        outputs: list[Any] = []
        if batch:
            with self.profiler.span(step.name, "step_execution"):
                outputs = self._call(step, batch)
        if step.block.dimensionality_offset > 0:
            counts = dict.fromkeys(indices, 0)
            for index, children in zip(ran, outputs):
                self.limits.check_crops(len(children), step.name)
                counts[index] = len(children)
                results.update({(*index, j): self._declared(step, child) for j, child in enumerate(children)})
            state.children[step.name] = counts
            results = {index: value for index, value in results.items() if len(index) == step.output_level.depth}
        else:
            results.update({index: self._declared(step, output) for index, output in zip(ran, outputs)})
        state.results[step.name] = results

    def _call(self, step: CompiledStep, batch: list[StepInputs]) -> list[Any]:
        try:
            outputs = step.block.run(step.manifest, batch, self.context_for(step.name))
        except WorkflowError as error:
            if error.step is None:
                raise type(error)(error.message, step.name, None, step.block.type_id) from None
            raise
        except VisionServeError as error:
            raise StepFailedError(error.message, error.status_code, step) from None
        except Exception:
            logger.exception("workflow step %s (%s) failed", step.name, step.block.type_id)
            raise StepFailedError("the step failed with an internal error.", 500, step) from None
        if len(outputs) != len(batch):
            raise StepFailedError(f"the block gave {len(outputs)} results for {len(batch)} inputs.", 500, step)
        return outputs

    @staticmethod
    def _declared(step: CompiledStep, output: dict[str, Any]) -> dict[str, Any]:
        if step.block.flow_control:
            return output  # its decision ({"next_steps": [...]}), read by the steps it gates
        return {item.name: output.get(item.name) for item in step.block.outputs_for(step.manifest)}

    def _inputs(self, step: CompiledStep, index: Index, state: RunState) -> StepInputs | object:
        for gate in step.gates:
            decision = state.element(gate, index, self.plan.steps[gate].level.depth)
            if decision is None or step.name not in decision.get("next_steps", ()):
                return _SKIPPED
        inputs = dict(step.manifest)
        for name, reference in step.references.items():
            nested = name in step.block.nested_inputs
            value = self._resolved(reference, index, state, nested)
            if value is _SKIPPED:
                return _SKIPPED
            inputs[name] = value
        return inputs

    def _resolved(self, reference: Any, index: Index, state: RunState, nested: bool) -> Any:
        if isinstance(reference, Selector):
            return self._value(reference, index, state, nested)
        if isinstance(reference, list):
            values = [self._resolved(item, index, state, nested) for item in reference]
            return _SKIPPED if any(value is _SKIPPED for value in values) else values
        if isinstance(reference, dict):
            values = {key: self._resolved(item, index, state, nested) for key, item in reference.items()}
            return _SKIPPED if any(value is _SKIPPED for value in values.values()) else values
        return reference

    def _value(self, selector: Selector, index: Index, state: RunState, nested: bool) -> Any:
        if selector.source == "inputs":
            if selector.name in state.inputs.scalars:
                return state.inputs.scalars[selector.name]
            return state.inputs.batches[selector.name][index[0]]
        level = self.plan.steps[selector.name].output_level
        if nested:
            count = state.children[level.lineage[-1]].get(index, 0)
            values = [self._value(selector, (*index, j), state, False) for j in range(count)]
            return [value for value in values if value is not _SKIPPED]
        element = state.element(selector.name, index, level.depth)
        if element is None:
            return _SKIPPED
        return element.get(selector.output)  # type: ignore[arg-type]


def build_outputs(
    plan: Plan, state: RunState, excluded: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """One dict per input element: scalars copied into each, level-k values as nested lists of depth k-1."""
    return [
        {output.name: _output_value(output, (element,), state)
         for output in plan.outputs if output.name not in excluded}  # fmt: skip
        for element in range(state.inputs.batch_size)
    ]


def _output_value(output: CompiledOutput, prefix: Index, state: RunState) -> Any:
    level = output.level
    if level.depth == 0:
        return _serialised(output, state, ())
    if len(prefix) == level.depth:
        return _serialised(output, state, prefix)
    counts = state.children[level.lineage[len(prefix) - 1]]
    return [_output_value(output, (*prefix, j), state) for j in range(counts.get(prefix, 0))]


def _serialised(output: CompiledOutput, state: RunState, index: Index) -> Any:
    selector = output.selector
    if selector.source == "inputs":
        value = state.inputs.scalars.get(selector.name, None)
        if selector.name in state.inputs.batches:
            value = state.inputs.batches[selector.name][index[0]]
        return serialised_value(value, output.root_coordinates)
    element = state.results[selector.name].get(index)
    if element is None:
        return None
    value = element if selector.output == WILDCARD_OUTPUT else element.get(selector.output)  # type: ignore[arg-type]
    return serialised_value(value, output.root_coordinates)
