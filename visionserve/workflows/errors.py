"""Workflow errors, answered in the reference's `WorkflowErrorResponse` shape: a message naming the step and the
property, the error's type, and `blocks_errors` for the step at fault."""

from __future__ import annotations

from typing import Any

from visionserve.errors import VisionServeError


class WorkflowError(VisionServeError):
    """Base: `step`/`block_type`/`property_name` say where, when the error belongs to one step."""

    status_code = 400
    error_type = "WorkflowError"
    context = "workflow_compilation"

    def __init__(
        self, message: str, step: str | None = None, property_name: str | None = None, block_type: str | None = None
    ) -> None:
        where = f"Step {step!r}" if step else ""
        if step and property_name:
            where += f", property {property_name!r}"
        super().__init__(f"{where}: {message}" if where else message)
        self.step = step
        self.property_name = property_name
        self.block_type = block_type

    def body(self) -> dict[str, Any]:
        blocks = []
        if self.step is not None:
            blocks.append({
                "block_id": self.step, "block_type": self.block_type, "block_details": None,
                "property_name": self.property_name, "property_details": None, "block_traceback": None,
            })  # fmt: skip
        return {"message": self.message, "error_type": self.error_type, "context": self.context,
                "inner_error_type": None, "inner_error_message": None, "blocks_errors": blocks}  # fmt: skip


class WorkflowSyntaxError(WorkflowError):
    """The definition or a step's properties do not validate."""

    error_type = "WorkflowSyntaxError"


class InvalidReferenceError(WorkflowError):
    """A selector names no input, step or output, or is malformed."""

    error_type = "InvalidReferenceTargetError"


class GraphStructureError(WorkflowError):
    """A cycle, a step fed by itself, or data of incompatible batch levels or lineages meeting in one step."""

    error_type = "ExecutionGraphStructureError"


class KindMismatchError(WorkflowError):
    """A step's output kind is not what the next step's property accepts."""

    error_type = "ReferenceTypeError"


class RuntimeInputError(WorkflowError):
    """A run's inputs do not fit the definition (missing, wrong type, batches of different sizes)."""

    error_type = "RuntimeInputError"
    context = "workflow_execution"


class WorkflowLimitError(WorkflowError):
    """A definition or a run over one of the server's workflow caps; the message names the setting."""

    error_type = "RuntimeLimitsCausedStepExecutionError"

    def __init__(self, message: str, status_code: int, step: str | None = None) -> None:
        super().__init__(message, step)
        self.status_code = status_code


class StepInputError(WorkflowError):
    """A block was given values it cannot use at run time (raised by blocks; the engine adds the step)."""

    error_type = "ClientCausedStepExecutionError"
    context = "workflow_execution"
