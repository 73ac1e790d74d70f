"""What the model blocks share: the properties every model step has, and one core job per batch.

Every model step goes through `core.InferenceService` (via `StepContext.infer`): the whole flattened batch (all
images, or all crops of all images) in one job, so the model sees batched forward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import AliasChoices, Field

from visionserve.models.manifest import Task
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputs, StepOutputs, selector,
)  # fmt: skip
from visionserve.workflows.values import Detections

Confidence = float | Literal["best", "default"]


class ModelManifest(BlockManifest):
    images: selector(kinds.IMAGE) = Field(  # type: ignore[valid-type]
        validation_alias=AliasChoices("images", "image"), description="The images (or crops) to run the model on."
    )
    model_id: str | selector(kinds.ROBOFLOW_MODEL_ID, kinds.STRING) = Field(  # type: ignore[valid-type]
        description="project/version of a model in this server's store, or a built-in model id."
    )
    disable_active_learning: bool | selector(kinds.BOOLEAN) = True  # type: ignore[valid-type]
    active_learning_target_dataset: str | selector(kinds.ROBOFLOW_PROJECT) | None = None  # type: ignore[valid-type]


class DetectionManifest(ModelManifest):
    confidence: Confidence | selector(kinds.FLOAT_ZERO_TO_ONE, kinds.FLOAT) = 0.4  # type: ignore[valid-type]
    class_filter: list[str] | selector(kinds.LIST_OF_VALUES) | None = None  # type: ignore[valid-type]
    iou_threshold: float | selector(kinds.FLOAT_ZERO_TO_ONE, kinds.FLOAT) = 0.3  # type: ignore[valid-type]
    max_detections: int | selector(kinds.INTEGER) = 300  # type: ignore[valid-type]
    class_agnostic_nms: bool | selector(kinds.BOOLEAN) = False  # type: ignore[valid-type]
    max_candidates: int | selector(kinds.INTEGER) = 3000  # type: ignore[valid-type]


class DetectionV3Manifest(DetectionManifest):
    """v3 names how confidence is chosen: the model's own (`best`, `default`: the model's default threshold, as
    `/infer` takes those keywords) or `custom_confidence`."""

    confidence_mode: Literal["best", "default", "custom"] | selector(kinds.STRING) = "best"  # type: ignore[valid-type]
    custom_confidence: float | selector(kinds.FLOAT_ZERO_TO_ONE, kinds.FLOAT) = 0.4  # type: ignore[valid-type]


def _core_options(options: dict[str, Any]) -> dict[str, Any]:
    """A step's options as the core takes them: v3's confidence mode becomes `confidence`."""
    if "confidence_mode" not in options:
        return options
    options = dict(options)
    mode, custom = options.pop("confidence_mode"), options.pop("custom_confidence")
    options["confidence"] = custom if mode == "custom" else mode
    return options


_NOT_OPTIONS = frozenset({"type", "name", "images", "model_id", "disable_active_learning",
                          "active_learning_target_dataset"})  # fmt: skip


def _grouped_by_options(batch: list[StepInputs]) -> dict[tuple, list[int]]:
    """Elements that share the model and its options (usually all): one core job per group."""
    groups: dict[tuple, list[int]] = {}
    for index, inputs in enumerate(batch):
        key = tuple((name, repr(value)) for name, value in sorted(inputs.items()) if name != "images")
        groups.setdefault(key, []).append(index)
    return groups


def model_run(task: Task, shape: Callable[[dict[str, Any], StepInputs], StepOutputs]) -> Callable:
    """A batch `run` for a model of `task`: one core job per group of elements sharing their options, each
    answer shaped into the step's outputs by `shape(core answer, element inputs)`."""

    def run(step: ModelManifest, batch: list[StepInputs], context: StepContext) -> list[StepOutputs]:
        outputs: list[StepOutputs | None] = [None] * len(batch)
        for indices in _grouped_by_options(batch).values():
            first = batch[indices[0]]
            options = _core_options({name: value for name, value in first.items() if name not in _NOT_OPTIONS})
            images = [batch[index]["images"] for index in indices]
            answers = context.infer(str(first["model_id"]), images, options, task)
            for index, answer in zip(indices, answers):
                outputs[index] = shape(answer, batch[index])
        return outputs  # type: ignore[return-value]

    return run


def detections_outputs(kind: str, with_model_id: bool) -> tuple[Output, ...]:
    outputs = (Output("inference_id", (kinds.INFERENCE_ID,)), Output("predictions", (kind,)))
    return outputs + ((Output("model_id", (kinds.ROBOFLOW_MODEL_ID,)),) if with_model_id else ())


def shape_detections(answer: dict[str, Any], inputs: StepInputs) -> StepOutputs:
    return {
        "inference_id": answer.get("inference_id"),
        "predictions": Detections.from_core(answer, inputs["images"]),
        "model_id": inputs["model_id"],
    }


def detection_blocks(
    task: Task, kind: str, v1: type[BlockManifest], v2: type[BlockManifest], human_name: str,
    *later: type[BlockManifest],
) -> tuple[BlockSpec, ...]:
    """The @v1 (no `model_id` output), @v2 and any later blocks of a detections-making model task."""
    run = model_run(task, shape_detections)
    return (
        *(BlockSpec(manifest, detections_outputs(kind, True), run, human_name=human_name) for manifest in later),
        BlockSpec(v2, detections_outputs(kind, True), run, human_name=human_name),
        BlockSpec(v1, detections_outputs(kind, False), run, human_name=human_name),
    )
