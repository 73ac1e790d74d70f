"""What `POST /inference_pipelines/initialise` takes: the reference's `InitialisePipelinePayload` (a workflow per
frame), or our shorter form naming just a model. Both become one `PipelineSpec`, checked before anything starts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VideoReference = str | int | list[str | int]
ProcessingMode = Literal["auto", "every_frame", "freshest"]
# The reference's server-side defaults, which its SDK always sends: taken as "no choice made" (see `frame_policy`).
REFERENCE_DEFAULT_POLICY = ("DROP_OLDEST", "EAGER")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class VideoConfiguration(_Lenient):
    type: Literal["VideoConfiguration"] = "VideoConfiguration"
    video_reference: VideoReference
    max_fps: float | None = Field(None, gt=0)
    source_buffer_filling_strategy: str | None = "DROP_OLDEST"
    source_buffer_consumption_strategy: str | None = "EAGER"
    video_source_properties: dict[str, Any] | list[dict[str, Any]] | None = None
    batch_collection_timeout: float | None = Field(None, ge=0)
    video_processing_mode: ProcessingMode = Field(
        "auto", description="auto: files every frame, live sources the newest frame; or force either for all."
    )


class WorkflowConfiguration(_Lenient):
    type: Literal["WorkflowConfiguration"] = "WorkflowConfiguration"
    workflow_specification: dict[str, Any] | None = None
    workspace_name: str | None = None
    workflow_id: str | None = None
    workflow_version_id: str | None = None
    image_input_name: str = "image"
    workflows_parameters: dict[str, Any] | None = None
    video_metadata_input_name: str = "video_metadata"
    disable_sinks: bool = False

    @model_validator(mode="after")
    def _one_definition(self) -> WorkflowConfiguration:
        if self.workflow_specification is None and not self.workflow_id:
            raise ValueError("give workflow_specification, or workflow_id (a workflow saved on this server)")
        return self


class MemorySinkConfiguration(_Lenient):
    type: Literal["MemorySinkConfiguration"] = "MemorySinkConfiguration"
    results_buffer_size: int = Field(64, ge=1)


class WebhookOutput(_Lenient):
    url: str
    per: Literal["frame", "batch"] = "frame"


class Outputs(_Lenient):
    """Where else results go, besides the consume buffer (ours): files under VISIONSERVE_STREAM_FILE_ROOTS."""

    jsonl: str | None = Field(None, description="A JSON-lines file, one line per frame result.")
    video: str | None = Field(None, description="An annotated video file (mp4), drawn as format=image draws.")
    webhook: WebhookOutput | None = None


class _Common(_Lenient):
    api_key: str | None = None
    consumption_timeout: float | None = Field(
        None, gt=0, description="Terminate the pipeline when nobody consumed its results for this many seconds."
    )
    decoding_buffer_size: int | None = Field(None, ge=1)
    outputs: Outputs = Field(default_factory=Outputs)


class InitialisePipelinePayload(_Common):
    """The reference's form."""

    video_configuration: VideoConfiguration
    processing_configuration: WorkflowConfiguration
    sink_configuration: MemorySinkConfiguration = Field(default_factory=MemorySinkConfiguration)


class ModelPipelinePayload(_Common):
    """Our form: one model on every frame, its task options, and tracking on or off."""

    model_id: str
    video_reference: VideoReference
    max_fps: float | None = Field(None, gt=0)
    video_processing_mode: ProcessingMode = "auto"
    track: bool = Field(False, description="Track objects per source: predictions get a tracker_id.")
    tracker: Literal["bytetrack", "sort", "ocsort"] = Field("bytetrack", description="Which tracker `track` runs.")
    line: list[list[float]] | None = Field(
        None, description="Count tracked objects crossing this segment [[x1, y1], [x2, y2]] (needs track)."
    )
    zone: list[list[float]] | None = Field(
        None, description="Time each tracked object spends in this polygon [[x, y], ...] (needs track)."
    )
    confidence: float | None = Field(None, ge=0, le=1)
    iou_threshold: float | None = Field(None, ge=0, le=1)
    class_filter: list[str] | None = None
    max_detections: int | None = Field(None, ge=1)
    class_agnostic_nms: bool | None = None
    results_buffer_size: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _counting_needs_tracks(self) -> ModelPipelinePayload:
        if (self.line is not None or self.zone is not None) and not self.track:
            raise ValueError("line and zone count tracked objects: set track to true")
        if self.line is not None and (len(self.line) != 2 or any(len(point) != 2 for point in self.line)):
            raise ValueError("line must be two points [[x1, y1], [x2, y2]]")
        if self.zone is not None and (len(self.zone) < 3 or any(len(point) != 2 for point in self.zone)):
            raise ValueError("zone must be a polygon of at least three points [[x, y], ...]")
        return self

    def task_options(self) -> dict[str, Any]:
        names = ("confidence", "iou_threshold", "class_filter", "max_detections", "class_agnostic_nms")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def parse_payload(body: dict[str, Any]) -> InitialisePipelinePayload | ModelPipelinePayload:
    """The reference's form when the body has `processing_configuration`, ours when it names a `model_id`."""
    if "processing_configuration" in body or "video_configuration" in body:
        return InitialisePipelinePayload.model_validate(body)
    return ModelPipelinePayload.model_validate(body)


def references(value: VideoReference) -> list[str | int]:
    return list(value) if isinstance(value, list) else [value]


def frame_policy(mode: ProcessingMode, filling: str | None, consumption: str | None) -> tuple[str | None, str | None]:
    """The buffer strategies to ask a source for; (None, None) lets each source choose by its kind (files: every
    frame, live: the newest). The reference's server defaults (which its SDK always sends, even for files, so that
    files lose frames: its issue #1160) count as no choice; any other pair is honoured as given."""
    if mode == "every_frame":
        return "WAIT", "LAZY"
    if mode == "freshest":
        return "DROP_OLDEST", "EAGER"
    if (filling, consumption) in (REFERENCE_DEFAULT_POLICY, (None, None)):
        return None, None
    return filling, consumption
