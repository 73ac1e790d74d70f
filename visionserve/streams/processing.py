"""What a pipeline does with a batch of frames (one per source): a workflow run, or one model's core job, both on
the one inference path (`core.InferenceService`, through the workflow engine for workflows)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from visionserve.core import InferenceJob, InferenceService
from visionserve.images.sources import DECODED, ImageSpec
from visionserve.models.aliases import resolve_alias
from visionserve.models.ids import validate_model_id
from visionserve.streams.frames import VideoFrame
from visionserve.tracking.byte_track import ByteTrackSettings, new_tracker, track
from visionserve.workflows.limits import WorkflowLimits
from visionserve.workflows.runner import WorkflowRun, compile_plan, run_workflow
from visionserve.workflows.values import Detections

Answer = tuple[dict[str, Any], dict[str, Any] | None]  # (the output to serialise, the predictions to draw)


class FrameProcessor(Protocol):
    def process(self, frames: list[VideoFrame]) -> list[Answer]: ...


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

    def check(self) -> None:
        """Compile now: a bad definition is the initialise request's 400, not a pipeline that fails later."""
        compile_plan(self.definition, self.limits)

    def process(self, frames: list[VideoFrame]) -> list[Answer]:
        metadata = [video_metadata(frame, self.pipeline_id) for frame in frames]
        images = [{"type": "numpy_object", "value": frame.image, "video_metadata": meta}
                  for frame, meta in zip(frames, metadata)]  # fmt: skip
        inputs = {**self.parameters, self.image_input: images, self.metadata_input: metadata}
        run = WorkflowRun(self.definition, inputs, str(uuid.uuid4()), api_key=self.api_key, state_key=self.pipeline_id)
        outputs = run_workflow(self.service, run, self.limits)["outputs"]
        return [(output, _drawable(output)) for output in outputs]


@dataclass
class ModelProcessor:
    service: InferenceService
    model_id: str
    options: Mapping[str, Any]
    track: bool
    api_key: str | None = None
    trackers: dict[int, Any] = field(default_factory=dict)  # source id -> its ByteTrack

    def check(self) -> None:
        """Resolve and load the model now: an unknown id is the initialise request's 404."""
        self.model_id = validate_model_id(resolve_alias(self.model_id))
        self.service.model(self.model_id, self.api_key)

    def process(self, frames: list[VideoFrame]) -> list[Answer]:
        job = InferenceJob(
            model_id=self.model_id, images=[ImageSpec(DECODED, frame.image) for frame in frames],
            request_id=str(uuid.uuid4()), as_list=True, options=self.options, api_key=self.api_key,
        )  # fmt: skip
        answers = [result.response for result in self.service.run(job)]
        if self.track:
            answers = [self._tracked(frame, answer) for frame, answer in zip(frames, answers)]
        return [(answer, answer) for answer in answers]

    def _tracked(self, frame: VideoFrame, answer: dict[str, Any]) -> dict[str, Any]:
        """Only the objects ByteTrack has an id for, each with its `tracker_id` (classifiers pass unchanged)."""
        if not isinstance(answer.get("predictions"), list):
            return answer
        tracker = self.trackers.get(frame.source_id)
        if tracker is None:
            tracker = self.trackers[frame.source_id] = new_tracker(replace(ByteTrackSettings(),
                                                                           frame_rate=frame.fps or 30.0))  # fmt: skip
        tracked = track(tracker, Detections.from_core(answer, None))
        return {**answer, "predictions": tracked.as_json()["predictions"]}
