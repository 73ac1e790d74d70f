"""What a pipeline does with a batch of frames (one per source): a workflow run, or one model's core job, both on
the one inference path (`core.InferenceService`, through the workflow engine for workflows)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from visionserve.core import InferenceJob, InferenceService
from visionserve.images.sources import DECODED, ImageSpec
from visionserve.models.aliases import resolve_alias
from visionserve.models.ids import validate_model_id
from visionserve.streams.frames import VideoFrame
from visionserve.tracking.byte_track import stream_tracker, track
from visionserve.tracking.clock import frame_seconds
from visionserve.tracking.zones import LineCounter, TimeInZone
from visionserve.workflows.limits import WorkflowLimits
from visionserve.workflows.compiler import Plan
from visionserve.workflows.runner import WorkflowRun, compile_plan, run_workflow
from visionserve.workflows.values import Detections

Answer = tuple[dict[str, Any], dict[str, Any] | None]  # (the output to serialise, the predictions to draw)


class FrameProcessor(Protocol):
    """`infer` may run for later frames before earlier ones finish when `order_free`; `finish` always runs in frame
    order, on the pipeline's thread (trackers and counters keep state from frame to frame)."""

    order_free: bool

    def infer(self, frames: list[VideoFrame]) -> Any: ...

    def finish(self, frames: list[VideoFrame], inferred: Any) -> list[Answer]: ...


def video_metadata(frame: VideoFrame, pipeline_id: str) -> dict[str, Any]:
    """The reference's `VideoMetadata` of a frame; the video id names the pipeline too, so two pipelines running one
    definition on their own cameras never share a tracker."""
    return {
        "video_identifier": f"{pipeline_id}/{frame.source_id}", "frame_number": frame.frame_id,
        "frame_timestamp": frame.frame_timestamp.isoformat(), "fps": frame.fps, "measured_fps": frame.measured_fps,
        "comes_from_video_file": frame.comes_from_video_file,
    }  # fmt: skip


def _drawable(output: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first detections-shaped output of a workflow (what an annotated video draws)."""
    for value in output.values():
        if isinstance(value, Mapping) and isinstance(value.get("predictions"), list):
            return dict(value)
    return None


@dataclass
class WorkflowProcessor:
    service: InferenceService
    definition: dict[str, Any]
    limits: WorkflowLimits
    pipeline_id: str
    image_input: str = "image"
    metadata_input: str = "video_metadata"
    parameters: Mapping[str, Any] = field(default_factory=dict)
    api_key: str | None = None

    plan: Plan | None = None
    order_free = False  # a definition's blocks (trackers, counters, aggregators) keep state across frames

    def check(self) -> None:
        """Compile now, once: a bad definition is the initialise request's 400, not a pipeline that fails later."""
        self.plan = compile_plan(self.definition, self.limits)

    def finish(self, frames: list[VideoFrame], inferred: list[Answer]) -> list[Answer]:
        return inferred

    def infer(self, frames: list[VideoFrame]) -> list[Answer]:
        metadata = [video_metadata(frame, self.pipeline_id) for frame in frames]
        images = [{"type": "numpy_object", "value": frame.image, "video_metadata": meta}
                  for frame, meta in zip(frames, metadata)]  # fmt: skip
        inputs = {**self.parameters, self.image_input: images, self.metadata_input: metadata}
        run = WorkflowRun(self.definition, inputs, str(uuid.uuid4()), api_key=self.api_key, state_key=self.pipeline_id)
        outputs = run_workflow(self.service, run, self.limits, plan=self.plan)["outputs"]
        return [(output, _drawable(output)) for output in outputs]


@dataclass
class SourceTracks:
    """One source's tracker, and its line counter and zone timer when the pipeline counts."""

    tracker: Any
    line: LineCounter | None
    zone: TimeInZone | None


@dataclass
class ModelProcessor:
    service: InferenceService
    model_id: str
    options: Mapping[str, Any]
    track: bool
    api_key: str | None = None
    tracker: str = "bytetrack"
    line: Sequence[Sequence[float]] | None = None
    zone: Sequence[Sequence[float]] | None = None
    pipeline_id: str = ""
    sources: dict[int, SourceTracks] = field(default_factory=dict)
    order_free = True  # the model's passes keep no state; tracking is in `finish`

    def check(self) -> None:
        """Resolve and load the model now: an unknown id is the initialise request's 404."""
        self.model_id = validate_model_id(resolve_alias(self.model_id))
        self.service.model(self.model_id, self.api_key)

    def infer(self, frames: list[VideoFrame]) -> list[dict[str, Any]]:
        job = InferenceJob(
            model_id=self.model_id, images=[ImageSpec(DECODED, frame.image) for frame in frames],
            request_id=str(uuid.uuid4()), as_list=True, options=self.options, api_key=self.api_key,
        )  # fmt: skip
        return [result.response for result in self.service.run(job)]

    def finish(self, frames: list[VideoFrame], inferred: list[dict[str, Any]]) -> list[Answer]:
        answers = [self._tracked(frame, answer) for frame, answer in zip(frames, inferred)] if self.track else inferred
        return [(answer, answer) for answer in answers]

    def _source(self, frame: VideoFrame) -> SourceTracks:
        tracks = self.sources.get(frame.source_id)
        if tracks is None:
            start, end = self.line if self.line is not None else (None, None)
            tracks = self.sources[frame.source_id] = SourceTracks(
                stream_tracker(self.tracker, frame.fps or 30.0),
                LineCounter(tuple(start), tuple(end), "CENTER") if self.line is not None else None,
                TimeInZone(self.zone, "CENTER") if self.zone is not None else None,
            )  # fmt: skip
        return tracks

    def _tracked(self, frame: VideoFrame, answer: dict[str, Any]) -> dict[str, Any]:
        """Only the objects the tracker has an id for, each with its `tracker_id` (and `time_in_zone` with a
        zone), plus `line_counts` with a line; classifiers pass unchanged."""
        if not isinstance(answer.get("predictions"), list):
            return answer
        tracks = self._source(frame)
        tracked = track(tracks.tracker, Detections.from_core(answer, None))
        extra: dict[str, Any] = {}
        if tracks.line is not None:
            count_in, count_out, _, _ = tracks.line.update(tracked)
            extra["line_counts"] = {"in": count_in, "out": count_out}
        if tracks.zone is not None:
            now = frame_seconds(video_metadata(frame, self.pipeline_id))
            tracked = tracks.zone.update(tracked, now, keep_outside=True, reset_outside=True)
        return {**answer, "predictions": tracked.as_json()["predictions"], **extra}
