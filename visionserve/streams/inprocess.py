"""`InferencePipeline`, in the caller's own process with no server, with the reference's constructor names:
`init(video_reference, model_id, on_prediction=...)` and `init_with_workflow(...)`, then `start()`, `join()`,
`pause_stream()`, `resume_stream()`, `terminate()`.

It builds the same parts a server does (the model store of VISIONSERVE_HOME, the core, the sources, the sinks) and
runs the same `Pipeline`; being the caller's own program, it may read any local file, camera or address (no source
policy). `on_prediction(predictions, video_frame)` gets, for one source, the frame's output and its `VideoFrame`;
for several, lists of them in source order with None for a source that had no frame in the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from visionserve.config import Settings
from visionserve.streams.builder import StreamServer, build_pipeline
from visionserve.streams.frames import FrameResult, VideoFrame
from visionserve.streams.payload import InitialisePipelinePayload, ModelPipelinePayload
from visionserve.streams.pipeline import Pipeline

OnPrediction = Callable[[Any, Any], None]


class CallbackSink:
    """Calls `on_prediction` on the pipeline's thread, as the reference does."""

    def __init__(self, on_prediction: OnPrediction, sources: int) -> None:
        self._call = on_prediction
        self._sources = sources
        self.calls = 0

    def put(self, results: Sequence[FrameResult | None]) -> None:
        self.calls += 1
        if self._sources == 1:
            (result,) = results
            if result is not None:
                self._call(result.output, result.frame)
            return
        outputs = [None if r is None else r.output for r in results]
        self._call(outputs, [None if r is None else r.frame for r in results])

    def close(self) -> None:
        """Nothing held."""

    def status(self) -> dict[str, Any]:
        return {"type": "callback", "calls": self.calls}


def _pushed(reference: Any) -> bool:
    """Frames the caller hands over itself (an iterable or callable of arrays), not a reference to open."""
    return not isinstance(reference, (str, int, list))


class InferencePipeline:
    def __init__(self, payload: ModelPipelinePayload | InitialisePipelinePayload, on_prediction: OnPrediction | None,
                 settings: Settings | None, sources: int) -> None:  # fmt: skip
        from visionserve.api.state import ServerState  # the model store, manager and core, as a server builds them

        self._state = ServerState.build(settings or Settings())
        self._closed = False
        sinks = [CallbackSink(on_prediction, sources)] if on_prediction is not None else []
        server = StreamServer(self._state.settings, self._state.service, trusted=True)
        api_key = payload.api_key
        self.pipeline: Pipeline = build_pipeline(server, payload, api_key, str(uuid.uuid4()), sinks)

    @classmethod
    def init(cls, video_reference: Any, model_id: str, on_prediction: OnPrediction | None = None,
             api_key: str | None = None, max_fps: float | None = None, confidence: float | None = None,
             iou_threshold: float | None = None, max_detections: int | None = None,
             class_agnostic_nms: bool | None = None, video_processing_mode: str = "auto", track: bool = False,
             tracker: str = "bytetrack", line: list | None = None, zone: list | None = None,
             outputs: dict[str, Any] | None = None, settings: Settings | None = None,
             **_reference_only: Any) -> InferencePipeline:  # fmt: skip
        """One model on every frame (options the reference has that make no sense here, such as active learning or
        its watchdog, are accepted and ignored)."""
        references = video_reference if isinstance(video_reference, list) else [video_reference]
        payload = ModelPipelinePayload.model_validate({
            "model_id": model_id, "video_reference": [0 if _pushed(r) else r for r in references], "api_key": api_key,
            "max_fps": max_fps, "confidence": confidence, "iou_threshold": iou_threshold,
            "max_detections": max_detections, "class_agnostic_nms": class_agnostic_nms,
            "video_processing_mode": video_processing_mode, "track": track, "tracker": tracker, "line": line,
            "zone": zone, "outputs": outputs or {},
        })  # fmt: skip
        payload.video_reference = references  # pushed frames cannot go through JSON validation: set as given
        return cls(payload, on_prediction, settings, len(references))

    @classmethod
    def init_with_workflow(cls, video_reference: Any, workflow_specification: dict[str, Any] | None = None,
                           workflow_id: str | None = None, on_prediction: OnPrediction | None = None,
                           api_key: str | None = None, image_input_name: str = "image",
                           workflows_parameters: dict[str, Any] | None = None,
                           video_metadata_input_name: str = "video_metadata", max_fps: float | None = None,
                           settings: Settings | None = None, **_reference_only: Any) -> InferencePipeline:  # fmt: skip
        references = video_reference if isinstance(video_reference, list) else [video_reference]
        payload = InitialisePipelinePayload.model_validate({
            "api_key": api_key,
            "video_configuration": {"video_reference": [0 if _pushed(r) else r for r in references],
                                    "max_fps": max_fps},
            "processing_configuration": {
                "workflow_specification": workflow_specification, "workflow_id": workflow_id,
                "image_input_name": image_input_name, "workflows_parameters": workflows_parameters,
                "video_metadata_input_name": video_metadata_input_name,
            },
        })  # fmt: skip
        payload.video_configuration.video_reference = references
        return cls(payload, on_prediction, settings, len(references))

    def start(self, use_main_thread: bool = True) -> None:
        """Run; with `use_main_thread` (the reference's default) return only when every source ended."""
        self.pipeline.start()
        if use_main_thread:
            self.join()

    def join(self) -> None:
        self.pipeline.join()
        self._close()

    def pause_stream(self) -> None:
        self.pipeline.pause()

    def resume_stream(self) -> None:
        self.pipeline.resume()

    def terminate(self) -> None:
        self.pipeline.terminate()
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._state.close()

    def report(self) -> dict[str, Any]:
        return self.pipeline.report()


__all__ = ["InferencePipeline", "VideoFrame"]
