"""Line counter (v1, v2): tracked objects crossing a line segment, counted in and out per video since the first
frame (supervision's `LineZone`, anchored on one point of each box)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from visionserve.tracking import clock
from visionserve.tracking.state import KeyedStates
from visionserve.tracking.zones import ANCHORS, LineCounter, checked_anchor
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip

MAX_COUNTERS = 1024  # (definition, step, video) counters kept; the least recently fed is forgotten first
Anchor = Literal[ANCHORS]  # type: ignore[valid-type]


class _Line(BlockManifest):
    detections: selector(*kinds.DETECTIONS)  # type: ignore[valid-type]
    line_segment: list[list[float]] | selector(kinds.LIST_OF_VALUES) = Field(  # type: ignore[valid-type]
        description="Two points [[x1, y1], [x2, y2]]: crossing it left to right (as seen from start to end) is in."
    )
    triggering_anchor: Anchor | selector(kinds.STRING) = "CENTER"  # type: ignore[valid-type]


class LineCounterV1Manifest(_Line):
    type: Literal["roboflow_core/line_counter@v1"]
    metadata: selector(kinds.VIDEO_METADATA)  # type: ignore[valid-type]


class LineCounterV2Manifest(_Line):
    type: Literal["roboflow_core/line_counter@v2"]
    image: selector(kinds.IMAGE)  # type: ignore[valid-type]


def _segment(value: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    try:
        (x1, y1), (x2, y2) = value
        return (float(x1), float(y1)), (float(x2), float(y2))
    except (TypeError, ValueError):
        raise StepInputError(f"line_segment must be two points [[x1, y1], [x2, y2]], not {value!r}.") from None


_counters: KeyedStates[dict[tuple, LineCounter]] = KeyedStates(dict, MAX_COUNTERS)


def _count(step: Any, inputs: StepInputs, context: StepContext, metadata: Mapping[str, Any] | None,
           fallback_id: str) -> dict[str, Any]:  # fmt: skip
    start, end = _segment(inputs["line_segment"])
    per_line = _counters.get((context.workflow_key, step.name, clock.video_identifier(metadata, fallback_id)))
    try:
        anchor = checked_anchor(inputs["triggering_anchor"])
        counter = per_line.setdefault((start, end, anchor), LineCounter(start, end, anchor))
        count_in, count_out, crossed_in, crossed_out = counter.update(inputs["detections"])
    except ValueError as error:
        raise StepInputError(str(error)) from None
    return {"count_in": count_in, "count_out": count_out, "detections_in": crossed_in, "detections_out": crossed_out}


def _v1(step: LineCounterV1Manifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    counts = _count(step, inputs, context, inputs["metadata"], "default_source")
    return {"count_in": counts["count_in"], "count_out": counts["count_out"]}


def _v2(step: LineCounterV2Manifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    image = inputs["image"]
    return _count(step, inputs, context, image.video_metadata, image.image_id)


COUNTS = (Output("count_in", (kinds.INTEGER,)), Output("count_out", (kinds.INTEGER,)))
BLOCKS = (
    BlockSpec(LineCounterV1Manifest, COUNTS, per_element(_v1), human_name="Line Counter"),
    BlockSpec(
        LineCounterV2Manifest,
        (*COUNTS, Output("detections_in", kinds.DETECTIONS), Output("detections_out", kinds.DETECTIONS)),
        per_element(_v2), human_name="Line Counter",
    ),
)  # fmt: skip
