"""Time in zone (v1, v2): how long each tracked object has been inside a polygon, per video, as a `time_in_zone`
field (seconds) on each detection. Frames of a video file are timed by frame number and fps, live frames by their
timestamp (`visionserve.tracking.clock`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from visionserve.tracking import clock
from visionserve.tracking.state import KeyedStates
from visionserve.tracking.zones import ANCHORS, TimeInZone, checked_anchor
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip

MAX_ZONES = 1024  # (definition, step, video) zones kept; the least recently fed is forgotten first
Anchor = Literal[ANCHORS]  # type: ignore[valid-type]


class _Zone(BlockManifest):
    detections: selector(*kinds.DETECTIONS)  # type: ignore[valid-type]
    zone: list[list[float]] | selector(kinds.ZONE, kinds.LIST_OF_VALUES) = Field(  # type: ignore[valid-type]
        description="The polygon: at least three points [[x, y], ...] in the image's pixels."
    )
    triggering_anchor: Anchor | selector(kinds.STRING) = "CENTER"  # type: ignore[valid-type]
    remove_out_of_zone_detections: bool | selector(kinds.BOOLEAN) = True  # type: ignore[valid-type]
    reset_out_of_zone_detections: bool | selector(kinds.BOOLEAN) = True  # type: ignore[valid-type]


class TimeInZoneV1Manifest(_Zone):
    type: Literal["roboflow_core/time_in_zone@v1", "TimeInZone"]
    metadata: selector(kinds.VIDEO_METADATA)  # type: ignore[valid-type]


class TimeInZoneV2Manifest(_Zone):
    type: Literal["roboflow_core/time_in_zone@v2"]
    image: selector(kinds.IMAGE)  # type: ignore[valid-type]


def _polygon(value: Any) -> tuple[tuple[float, float], ...]:
    try:
        points = tuple((float(x), float(y)) for x, y in value)
    except (TypeError, ValueError):
        points = ()
    if len(points) < 3:
        raise StepInputError(f"zone must be a polygon of at least three points [[x, y], ...], not {value!r}.")
    return points


_zones: KeyedStates[dict[tuple, TimeInZone]] = KeyedStates(dict, MAX_ZONES)


def _timed(step: Any, inputs: StepInputs, context: StepContext, metadata: Mapping[str, Any] | None,
           fallback_id: str) -> dict[str, Any]:  # fmt: skip
    polygon = _polygon(inputs["zone"])
    per_zone = _zones.get((context.workflow_key, step.name, clock.video_identifier(metadata, fallback_id)))
    try:
        anchor = checked_anchor(inputs["triggering_anchor"])
        zone = per_zone.setdefault((polygon, anchor), TimeInZone(polygon, anchor))
        timed = zone.update(inputs["detections"], clock.frame_seconds(metadata),
                            keep_outside=not inputs["remove_out_of_zone_detections"],
                            reset_outside=bool(inputs["reset_out_of_zone_detections"]))  # fmt: skip
    except ValueError as error:
        raise StepInputError(str(error)) from None
    return {"timed_detections": timed}


def _v1(step: TimeInZoneV1Manifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    return _timed(step, inputs, context, inputs["metadata"], "default_source")


def _v2(step: TimeInZoneV2Manifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    image = inputs["image"]
    return _timed(step, inputs, context, image.video_metadata, image.image_id)


TIMED = (Output("timed_detections", kinds.DETECTIONS),)
BLOCKS = (
    BlockSpec(TimeInZoneV1Manifest, TIMED, per_element(_v1), human_name="Time in Zone"),
    BlockSpec(TimeInZoneV2Manifest, TIMED, per_element(_v2), human_name="Time in Zone"),
)
