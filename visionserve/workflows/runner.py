"""One workflow request, end to end: compile, decode the inputs, run the plan with model steps bound to the
server's `InferenceService` (the one inference path), and build the response body."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from visionserve.core import InferenceJob, InferenceService
from visionserve.images.budget import RequestPixels
from visionserve.images.sources import DECODED, ImageSpec
from visionserve.models.aliases import resolve_alias
from visionserve.models.ids import validate_model_id
from visionserve.models.manifest import Task
from visionserve.workflows.blocks.base import StepContext
from visionserve.workflows.compiler import Plan, compile_definition
from visionserve.workflows.engine import Engine, build_outputs
from visionserve.workflows.limits import PassCounter, WorkflowLimits
from visionserve.workflows.profiler import Profiler
from visionserve.workflows.runtime_inputs import attach_video_metadata, resolve_inputs
from visionserve.workflows.values import WorkflowImage


@dataclass(frozen=True)
class WorkflowRun:
    """What a run request asks for, protocol-neutral."""

    definition: Any  # the raw definition (a dict, checked by the compiler)
    inputs: Mapping[str, Any]
    request_id: str
    excluded_fields: frozenset[str] = frozenset()
    enable_profiling: bool = False
    api_key: str | None = None  # only ever forwarded to the weights API
    state_key: str = ""  # keeps blocks' state across runs apart per owner (a stream pipeline), beside the definition
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class ModelCalls:
    """Model steps' `infer`, bound to one request: its key, id, cancellation and model-pass cap."""

    service: InferenceService
    run: WorkflowRun
    passes: PassCounter

    def infer(self, step: str, model_id: str, images: Sequence[WorkflowImage], options: Mapping[str, Any],
              task: Task | None) -> list[dict[str, Any]]:  # fmt: skip
        self.passes.take(len(images), step)
        model_id = validate_model_id(resolve_alias(model_id))
        answers: list[dict[str, Any]] = []
        size = self.service.max_batch_images
        for start in range(0, len(images), size):  # one job per chunk the core accepts (a job is a batch)
            job = InferenceJob(
                model_id=model_id, images=[ImageSpec(DECODED, image.pixels) for image in images[start : start + size]],
                request_id=self.run.request_id, as_list=True, options=options, expected_task=task,
                api_key=self.run.api_key, cancelled=self.run.cancelled,
            )  # fmt: skip
            answers.extend(result.response for result in self.service.run(job))
        return answers

    @functools.cached_property
    def workflow_key(self) -> str:
        """The definition's digest: what blocks keeping state across runs (the data aggregator) key it by."""
        digest = hashlib.sha256(json.dumps(self.run.definition, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.run.state_key}/{digest}" if self.run.state_key else digest

    def context(self, step: str, limits: WorkflowLimits) -> StepContext:
        return StepContext(
            step, lambda model_id, images, options, task: self.infer(step, model_id, images, options, task),
            limits.max_crops_per_image, self.workflow_key, self.service.images.fetcher.allow_hosts,
        )  # fmt: skip


def compile_plan(definition: Any, limits: WorkflowLimits, profiler: Profiler | None = None) -> Plan:
    with (profiler or Profiler(False)).span("workflow_compilation", "workflow_compilation"):
        return compile_definition(definition, limits)


def run_workflow(
    service: InferenceService, run: WorkflowRun, limits: WorkflowLimits, executor: Executor | None = None,
    plan: Plan | None = None,
) -> dict[str, Any]:
    """The response body of `/workflows/run`: `outputs` (one dict per input element) and the profiler trace.
    `plan`: `run.definition` already compiled (a stream pipeline runs one definition on every frame)."""
    profiler = Profiler(run.enable_profiling)
    plan = plan or compile_plan(run.definition, limits, profiler)
    calls = ModelCalls(service, run, PassCounter(limits.max_model_passes))
    budget = service.limits
    pixels = RequestPixels(budget.request_pixels, budget.server_pixels) if budget is not None else nullcontext(None)
    with pixels as charged:  # the input images stay booked until the answer is made
        with profiler.span("inputs", "workflow_execution"):
            inputs = resolve_inputs(
                plan.inputs, run.inputs, lambda spec: service.images.load(spec, True, None, charged),
                service.max_batch_images,
            )  # fmt: skip
            inputs = attach_video_metadata(inputs, plan.inputs)
        engine = Engine(plan, limits, lambda step: calls.context(step, limits), executor, run.cancelled, profiler)
        state = engine.run(inputs)
        with profiler.span("outputs", "workflow_execution"):
            outputs = build_outputs(plan, state, run.excluded_fields)
    return {
        "outputs": outputs,
        "profiler_trace": profiler.trace(),
        "python_blocks_output_streams": None,
        "python_blocks_debug_traces": None,
    }
