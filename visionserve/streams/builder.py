"""A checked payload → a pipeline ready to start: every source reference passes the address and folder policy, the
definition compiles (or the model loads), and output files lie under the allowed folders, all before any source
opens; then sources, sinks and the processor are made with the server's caps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionserve.api.state import settings_plan
from visionserve.config import Settings
from visionserve.core import InferenceService
from visionserve.streams.errors import PipelineRefused
from visionserve.streams.payload import (
    InitialisePipelinePayload, ModelPipelinePayload, Outputs, frame_policy, references,
)  # fmt: skip
from visionserve.streams.pipeline import Pipeline
from visionserve.streams.processing import FrameProcessor, ModelProcessor, WorkflowProcessor
from visionserve.streams.sinks.base import Sink
from visionserve.streams.sinks.feed import LiveFeed
from visionserve.streams.sinks.jsonl import JsonLinesSink
from visionserve.streams.sinks.memory import MemorySink
from visionserve.streams.sinks.video import AnnotatedVideoSink
from visionserve.streams.sinks.webhook import WebhookSink
from visionserve.streams.source_policy import FILE_ROOTS_SETTING, SourceRefused, check_reference, check_under_roots
from visionserve.streams.source_options import ConsumptionStrategy, FillingStrategy, SourceOptions
from visionserve.streams.sources import open_source
from visionserve.workflows.limits import WorkflowLimits
from visionserve.workflows.saved import SavedWorkflows


def uploads_folder(settings: Settings) -> Path:
    return settings.home / "stream-uploads"


@dataclass(frozen=True)
class StreamServer:
    """What pipelines use of the server."""

    settings: Settings
    service: InferenceService
    trusted: bool = False  # in-process (the caller's own program): any local path or camera address, no policy

    @property
    def file_roots(self) -> list[Path]:
        """VISIONSERVE_STREAM_FILE_ROOTS, and the folder of videos uploaded to this server (the playground's)."""
        return [*self.output_roots, uploads_folder(self.settings).resolve()]

    @property
    def output_roots(self) -> list[Path]:
        """Where pipelines may write files: VISIONSERVE_STREAM_FILE_ROOTS only."""
        return [Path(root).expanduser().resolve() for root in self.settings.stream_file_roots]


def _checked_references(server: StreamServer, payload_references: list[str | int]) -> None:
    cap = server.settings.max_sources_per_pipeline
    if not payload_references:
        raise PipelineRefused("video_reference names no source.")
    if len(payload_references) > cap:
        raise PipelineRefused(f"{len(payload_references)} sources, more than one pipeline reads "
                              f"({cap}, VISIONSERVE_MAX_SOURCES_PER_PIPELINE).", 413)  # fmt: skip
    if server.trusted:  # the caller's own program: its own files, cameras and network
        return
    for reference in payload_references:
        try:
            check_reference(reference, url_allow_hosts=server.settings.url_allow_hosts, file_roots=server.file_roots)
        except SourceRefused as error:
            raise PipelineRefused(f"Source {reference!r}: {error.message}", error.status_code) from None


def _output_path(server: StreamServer, value: str) -> Path:
    """A file a pipeline may write: under VISIONSERVE_STREAM_FILE_ROOTS, in a folder that exists."""
    path = Path(value).expanduser()
    if server.trusted:
        return path
    if not server.output_roots:
        raise PipelineRefused(f"Output {value!r}: pipelines write files only under the folders named in "
                              f"{FILE_ROOTS_SETTING}, and none is set.", 403)  # fmt: skip
    if not path.parent.is_dir():
        raise PipelineRefused(f"Output {value!r}: the folder {path.parent} does not exist.")
    try:
        check_under_roots(path.parent, server.output_roots, value)
    except SourceRefused as error:
        raise PipelineRefused(f"Output {error.message}", error.status_code) from None
    return path


def _sinks(server: StreamServer, outputs: Outputs) -> list[Sink]:
    """Checked all first, then made: a refused output leaves no file or thread behind."""
    jsonl = _output_path(server, outputs.jsonl) if outputs.jsonl else None
    video = _output_path(server, outputs.video) if outputs.video else None
    sinks: list[Sink] = [LiveFeed()]
    if jsonl is not None:
        sinks.append(JsonLinesSink(jsonl))
    if video is not None:
        sinks.append(AnnotatedVideoSink(video, None))
    if outputs.webhook is not None:
        sinks.append(WebhookSink(outputs.webhook.url, per=outputs.webhook.per,
                                 allow_hosts=server.settings.url_allow_hosts))  # fmt: skip
    return sinks


def _processor(server: StreamServer, payload: Any, pipeline_id: str, api_key: str | None) -> FrameProcessor:
    if isinstance(payload, ModelPipelinePayload):
        processor: Any = ModelProcessor(server.service, payload.model_id, payload.task_options(), payload.track,
                                        api_key, payload.tracker, payload.line, payload.zone, pipeline_id)  # fmt: skip
    else:
        config = payload.processing_configuration
        definition = config.workflow_specification
        if definition is None:
            definition = SavedWorkflows(server.settings.home).get(str(config.workflow_id)).definition
        processor = WorkflowProcessor(
            server.service, definition, WorkflowLimits.of(server.settings), pipeline_id, config.image_input_name,
            config.video_metadata_input_name, config.workflows_parameters or {}, api_key,
        )  # fmt: skip
    processor.check()
    return processor


def _source_options(server: StreamServer, payload: Any, index: int) -> SourceOptions:
    video = payload.video_configuration if isinstance(payload, InitialisePipelinePayload) else payload
    filling, consumption = frame_policy(
        video.video_processing_mode, getattr(video, "source_buffer_filling_strategy", None),
        getattr(video, "source_buffer_consumption_strategy", None),
    )  # fmt: skip
    properties = getattr(video, "video_source_properties", None)
    if isinstance(properties, list):
        properties = properties[index] if index < len(properties) else None
    try:
        return SourceOptions(
            buffer_size=min(payload.decoding_buffer_size or server.settings.stream_buffer_frames,
                            server.settings.stream_buffer_frames),
            filling=FillingStrategy(filling) if filling else None,
            consumption=ConsumptionStrategy(consumption) if consumption else None,
            max_fps=video.max_fps, max_pixels=server.settings.max_image_pixels,
            decode_threads=server.settings.stream_decode_threads, video_source_properties=properties,
        )  # fmt: skip
    except ValueError as error:
        raise PipelineRefused(f"video_configuration: {error}") from None


def build_pipeline(server: StreamServer, payload: InitialisePipelinePayload | ModelPipelinePayload,
                   api_key: str | None, pipeline_id: str, extra_sinks: Sequence[Sink] = ()) -> Pipeline:  # fmt: skip
    video_references = references(payload.video_configuration.video_reference
                                  if isinstance(payload, InitialisePipelinePayload) else payload.video_reference)
    _checked_references(server, video_references)
    buffer_size = (payload.sink_configuration.results_buffer_size
                   if isinstance(payload, InitialisePipelinePayload) else payload.results_buffer_size)  # fmt: skip
    if buffer_size > server.settings.stream_results_buffer:
        raise PipelineRefused(f"results_buffer_size {buffer_size} is over this server's "
                              f"{server.settings.stream_results_buffer} (VISIONSERVE_STREAM_RESULTS_BUFFER).", 413)
    options = [_source_options(server, payload, index) for index in range(len(video_references))]
    processor = _processor(server, payload, pipeline_id, api_key)
    sinks = [*_sinks(server, payload.outputs), *extra_sinks]
    sources = [open_source(reference, index, option)
               for index, (reference, option) in enumerate(zip(video_references, options))]  # fmt: skip
    # Files wait for their consumer (nothing is lost) unless results also go somewhere else that reads them all.
    only_memory = not (payload.outputs.jsonl or payload.outputs.video or payload.outputs.webhook or extra_sinks)
    memory = MemorySink(buffer_size, wait_when_full=only_memory and not any(source.is_live for source in sources))
    batch_timeout = (payload.video_configuration.batch_collection_timeout
                     if isinstance(payload, InitialisePipelinePayload) else None)  # fmt: skip
    described = {"pipeline_id": pipeline_id, "processing": _described(payload)}
    depth = settings_plan(server.settings).concurrent_runs
    return Pipeline(pipeline_id, sources, processor, memory, sinks, batch_timeout, payload.consumption_timeout,
                    described, depth)  # fmt: skip


def _described(payload: Any) -> dict[str, Any]:
    if isinstance(payload, ModelPipelinePayload):
        return {"model_id": payload.model_id, "track": payload.track}
    config = payload.processing_configuration
    return {"workflow_id": config.workflow_id} if config.workflow_id else {"workflow": "inline specification"}


def live_feed(sinks: Sequence[Sink]) -> LiveFeed:
    return next(sink for sink in sinks if isinstance(sink, LiveFeed))
