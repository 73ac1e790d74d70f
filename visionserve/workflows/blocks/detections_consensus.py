"""Detections consensus: several detection steps on the same image vote; a region is kept when enough of them
found it. Each detection, in source order, looks in every other source for its best match (IoU above
`iou_threshold`, the same class when `class_aware`, not yet used); with at least `required_votes - 1` matches the
group becomes one detection (class, box and confidence aggregated as asked), kept if confident enough. Then
`object_present` / `presence_confidence` say whether the kept detections meet `required_objects`.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, Field, PositiveInt

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.blocks.fusion_common import iou_matrix
from visionserve.workflows.values import Detections

Aggregation = Literal["average", "max", "min"]
AGGREGATE: dict[str, Callable[[Sequence[float]], float]] = {"average": statistics.mean, "max": max, "min": min}
Member = tuple[Detections, int]  # one detection: its source and its index there


class DetectionsConsensusManifest(BlockManifest):
    type: Literal["roboflow_core/detections_consensus@v1", "DetectionsConsensus"]
    predictions_batches: list[selector(*kinds.DETECTIONS)] = Field(  # type: ignore[valid-type]
        min_length=1, validation_alias=AliasChoices("predictions_batches", "predictions"),
        description="The detection steps that vote, each on the same images.",
    )  # fmt: skip
    required_votes: PositiveInt | selector(kinds.INTEGER) = Field(  # type: ignore[valid-type]
        description="How many sources must find a region for it to be kept."
    )
    class_aware: bool | selector(kinds.BOOLEAN) = True  # type: ignore[valid-type]
    iou_threshold: float | selector(kinds.FLOAT_ZERO_TO_ONE) = 0.3  # type: ignore[valid-type]
    confidence: float | selector(kinds.FLOAT_ZERO_TO_ONE) = 0.0  # type: ignore[valid-type]
    classes_to_consider: list[str] | selector(kinds.LIST_OF_VALUES) | None = None  # type: ignore[valid-type]
    required_objects: (  # type: ignore[valid-type]
        PositiveInt | dict[str, PositiveInt] | selector(kinds.INTEGER, kinds.DICTIONARY) | None
    ) = None
    presence_confidence_aggregation: Aggregation = "max"
    detections_merge_confidence_aggregation: Aggregation = "average"
    detections_merge_coordinates_aggregation: Aggregation = "average"


def _checked(inputs: StepInputs) -> StepInputs:
    """The values that came from selectors, checked as the manifest checks literals."""
    votes, objects = inputs["required_votes"], inputs["required_objects"]
    if isinstance(votes, bool) or not isinstance(votes, int) or votes < 1:
        raise StepInputError(f"required_votes must be a positive whole number, not {votes!r}.")
    for name in ("iou_threshold", "confidence"):
        value = inputs[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise StepInputError(f"{name} must be a number from 0 to 1, not {value!r}.")
    if not isinstance(inputs["class_aware"], bool):
        raise StepInputError(f"class_aware must be true or false, not {inputs['class_aware']!r}.")
    counts = objects.values() if isinstance(objects, dict) else [] if objects is None else [objects]
    if any(isinstance(count, bool) or not isinstance(count, int) or count < 1 for count in counts):
        raise StepInputError(f"required_objects must be a positive number or a class → number map, not {objects!r}.")
    return inputs


def _best_matches(position: int, index: int, sources: list[Detections], inputs: StepInputs, used: set[str]
                  ) -> list[Member]:  # fmt: skip
    """In every other source, the unused detection overlapping detection `index` of source `position` most (above
    the threshold)."""
    source = sources[position]
    matches = []
    for other_position, other in enumerate(sources):
        if other_position == position or not len(other):
            continue
        overlaps = iou_matrix(source.xyxy[index : index + 1], other.xyxy)[0]
        eligible = (overlaps > inputs["iou_threshold"]) & ~np.isin(other.detection_id, list(used))
        if inputs["class_aware"]:
            eligible &= other.class_name == source.class_name[index]
        if eligible.any():
            matches.append((other, int(np.argmax(np.where(eligible, overlaps, -1.0)))))
    return matches


def _merged(members: list[Member], inputs: StepInputs) -> tuple[np.ndarray, float, int, str]:
    """One detection for a group: its box, confidence, class id and class name."""
    boxes = np.array([source.xyxy[index] for source, index in members])
    confidences = [float(source.confidence[index]) for source, index in members]
    classes = [(str(source.class_name[index]), int(source.class_id[index])) for source, index in members]
    class_mode = inputs["detections_merge_confidence_aggregation"]
    box_mode = inputs["detections_merge_coordinates_aggregation"]
    if class_mode == "average":
        (name, class_id), _ = Counter(classes).most_common(1)[0]  # the majority; ties: the first seen
    else:
        name, class_id = classes[confidences.index(AGGREGATE[class_mode](confidences))]
    if box_mode == "average":
        box = boxes.mean(axis=0)
    else:
        areas = list((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        box = boxes[areas.index(AGGREGATE[box_mode](areas))]
    return box, float(AGGREGATE[class_mode](confidences)), class_id, name


def _presence(kept: Detections, inputs: StepInputs) -> tuple[bool, dict[str, float]]:
    required, aggregate = inputs["required_objects"] or 0, AGGREGATE[inputs["presence_confidence_aggregation"]]
    if not len(kept):
        return False, {}
    if isinstance(required, dict) and not inputs["class_aware"]:
        required = sum(required.values())
    if isinstance(required, int) and len(kept) < required:
        return False, {}
    if not inputs["class_aware"]:
        return True, {"any_object": aggregate(kept.confidence.tolist())}
    by_class = {str(name): kept.confidence[kept.class_name == name].tolist() for name in dict.fromkeys(kept.class_name)}
    if isinstance(required, dict) and any(len(by_class.get(name, [])) < count for name, count in required.items()):
        return False, {}
    return True, {name: aggregate(values) for name, values in by_class.items()}


def consensus(step: DetectionsConsensusManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    inputs = _checked(inputs)
    sources: list[Detections] = list(inputs["predictions_batches"])
    images = {part.image.image_id: part for part in sources if part.image is not None and len(part)}
    if len(images) > 1:
        raise StepInputError("the predictions to agree on were made on different images.")
    first = next(iter(images.values()), sources[0])
    if inputs["classes_to_consider"]:
        sources = [part.selected(np.isin(part.class_name, inputs["classes_to_consider"])) for part in sources]
    used: set[str] = set()
    groups: list[tuple[np.ndarray, float, int, str]] = []
    for position, source in enumerate(sources):
        for index in range(len(source)):
            if source.detection_id[index] in used:
                continue
            members = [(source, index), *_best_matches(position, index, sources, inputs, used)]
            if len(members) < inputs["required_votes"]:
                continue
            merged = _merged(members, inputs)
            if merged[1] < inputs["confidence"]:
                continue
            groups.append(merged)
            used.update(str(part.detection_id[i]) for part, i in members)
    kept = Detections(
        xyxy=np.array([group[0] for group in groups], dtype=np.float64).reshape(len(groups), 4),
        confidence=np.array([group[1] for group in groups], dtype=np.float64),
        class_id=np.array([group[2] for group in groups], dtype=np.int64),
        class_name=np.array([group[3] for group in groups] or [], dtype=object),
        detection_id=np.array([str(uuid.uuid4()) for _ in groups] or [], dtype=object),
        image=first.image, image_size=first.image_size,
    )  # fmt: skip
    present, presence_confidence = _presence(kept, inputs)
    return {"predictions": kept, "object_present": present, "presence_confidence": presence_confidence}


BLOCK = BlockSpec(
    DetectionsConsensusManifest,
    (Output("predictions", (kinds.OBJECT_DETECTION,)), Output("object_present", (kinds.BOOLEAN, kinds.DICTIONARY)),
     Output("presence_confidence", (kinds.FLOAT_ZERO_TO_ONE, kinds.DICTIONARY))),
    per_element(consensus),
    human_name="Detections Consensus",
)  # fmt: skip
