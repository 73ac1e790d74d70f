"""Byte tracker (v1, v2, v3): ByteTrack (`visionserve.tracking.byte_track`) per video, so tracker ids stay stable
across the frames of one video; v3 also tells new objects from ones already seen.

State lives in this server process, keyed by (definition, step, video id): the video id comes from the frame's
video metadata (v1: the `metadata` input; v2/v3: the image's own), or is the image's id when there is none.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from visionserve.tracking import clock
from visionserve.tracking.byte_track import ByteTrackSettings, TrackersMissing, new_tracker, track
from visionserve.tracking.state import KeyedStates
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.values import Detections

MAX_VIDEOS = 1024  # videos tracked at once per server; the least recently fed is forgotten first
INSTANCES_CACHE_SIZE = 16384  # tracker ids remembered per video (v3's `instances_cache_size` default)


class _Settings(BlockManifest):
    detections: selector(*kinds.DETECTIONS)  # type: ignore[valid-type]
    track_activation_threshold: float | selector(kinds.FLOAT_ZERO_TO_ONE) = 0.25  # type: ignore[valid-type]
    lost_track_buffer: int | selector(kinds.INTEGER) = 30  # type: ignore[valid-type]
    minimum_matching_threshold: float | selector(kinds.FLOAT_ZERO_TO_ONE) = 0.8  # type: ignore[valid-type]
    minimum_consecutive_frames: int | selector(kinds.INTEGER) = 1  # type: ignore[valid-type]


class ByteTrackerV1Manifest(_Settings):
    type: Literal["roboflow_core/byte_tracker@v1", "ByteTracker"]
    metadata: selector(kinds.VIDEO_METADATA)  # type: ignore[valid-type]


class ByteTrackerV2Manifest(_Settings):
    type: Literal["roboflow_core/byte_tracker@v2"]
    image: selector(kinds.IMAGE)  # type: ignore[valid-type]


class ByteTrackerV3Manifest(ByteTrackerV2Manifest):
    type: Literal["roboflow_core/byte_tracker@v3"]  # type: ignore[assignment]
    instances_cache_size: int = INSTANCES_CACHE_SIZE


@dataclass
class _VideoTracker:
    """One video's tracker, and the tracker ids it has already answered (for v3's new / already seen)."""

    tracker: Any = None
    settings: ByteTrackSettings | None = None
    seen: OrderedDict[int, None] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_videos: KeyedStates[_VideoTracker] = KeyedStates(_VideoTracker, MAX_VIDEOS)


def _settings(inputs: StepInputs, metadata: Mapping[str, Any] | None) -> ByteTrackSettings:
    try:
        return ByteTrackSettings(
            float(inputs["track_activation_threshold"]), int(inputs["lost_track_buffer"]),
            float(inputs["minimum_matching_threshold"]), max(1, int(inputs["minimum_consecutive_frames"])),
            clock.frame_rate(metadata),
        )  # fmt: skip
    except (TypeError, ValueError) as error:
        raise StepInputError(f"tracker settings must be numbers: {error}") from None


def _tracked(step: Any, inputs: StepInputs, context: StepContext, metadata: Mapping[str, Any] | None,
             fallback_id: str) -> tuple[Detections, list[bool]]:  # fmt: skip
    """The tracked detections of this frame, and whether each one's id is new."""
    detections: Detections = inputs["detections"]
    video = _videos.get((context.workflow_key, step.name, clock.video_identifier(metadata, fallback_id)))
    settings = _settings(inputs, metadata)
    with video.lock:
        if video.tracker is None or video.settings != settings:
            try:
                video.tracker, video.settings = new_tracker(settings), settings
            except TrackersMissing as error:
                raise StepInputError(str(error)) from None
        tracked = track(video.tracker, detections)
        new = [int(tracker_id) not in video.seen for tracker_id in tracked.tracker_id]
        for tracker_id in tracked.tracker_id:
            video.seen[int(tracker_id)] = None
            video.seen.move_to_end(int(tracker_id))
        while len(video.seen) > getattr(step, "instances_cache_size", INSTANCES_CACHE_SIZE):
            video.seen.popitem(last=False)
    return tracked, new


def _v1(step: ByteTrackerV1Manifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    detections: Detections = inputs["detections"]
    fallback = detections.image.image_id if detections.image is not None else "default_source"
    return {"tracked_detections": _tracked(step, inputs, context, inputs["metadata"], fallback)[0]}


def _v2(step: ByteTrackerV2Manifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    image = inputs["image"]
    return {"tracked_detections": _tracked(step, inputs, context, image.video_metadata, image.image_id)[0]}


def _v3(step: ByteTrackerV3Manifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    image = inputs["image"]
    tracked, new = _tracked(step, inputs, context, image.video_metadata, image.image_id)
    already_seen = [not flag for flag in new]
    return {"tracked_detections": tracked, "new_instances": tracked.selected(new),
            "already_seen_instances": tracked.selected(already_seen)}  # fmt: skip


TRACKED = Output("tracked_detections", kinds.DETECTIONS)
BLOCKS = (
    BlockSpec(ByteTrackerV1Manifest, (TRACKED,), per_element(_v1), human_name="Byte Tracker"),
    BlockSpec(ByteTrackerV2Manifest, (TRACKED,), per_element(_v2), human_name="Byte Tracker"),
    BlockSpec(
        ByteTrackerV3Manifest,
        (TRACKED, Output("new_instances", kinds.DETECTIONS), Output("already_seen_instances", kinds.DETECTIONS)),
        per_element(_v3), human_name="Byte Tracker",
    ),
)  # fmt: skip
