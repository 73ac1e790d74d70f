"""The stream pipeline calls of the client, with the reference client's names and payloads (`/inference_pipelines/*`;
it sends `{"api_key": ...}` as a JSON body on every call, GETs included, and returns the raw JSON), plus ours:
`start_inference_pipeline` for one model on a stream, and several results per consume."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from visionserve.sdk.errors import InvalidParameterError


class PipelineCalls:
    """Mixed into `InferenceHTTPClient`, which provides `api_key` and `_request`."""

    api_key: str | None
    _request: Callable[..., httpx.Response]

    def _pipeline_call(self, method: str, path: str, **body: Any) -> dict[str, Any]:
        payload = {"api_key": self.api_key, **body}
        return self._request(method, f"/inference_pipelines{path}", retry=False, json=payload).json()

    def start_inference_pipeline_with_workflow(
        self, video_reference: str | int | list[str | int], workflow_specification: dict | None = None,
        workspace_name: str | None = None, workflow_id: str | None = None, image_input_name: str = "image",
        workflows_parameters: dict[str, Any] | None = None, workflows_thread_pool_workers: int = 4,
        cancel_thread_pool_tasks_on_exit: bool = True, video_metadata_input_name: str = "video_metadata",
        max_fps: float | None = None, source_buffer_filling_strategy: str | None = "DROP_OLDEST",
        source_buffer_consumption_strategy: str | None = "EAGER", video_source_properties: dict | None = None,
        batch_collection_timeout: float | None = None, results_buffer_size: int = 64,
    ) -> dict[str, Any]:  # fmt: skip
        """A pipeline running a workflow on every frame (the reference's payload, field for field)."""
        if (workflow_specification is None) == (workspace_name is None or workflow_id is None):
            raise InvalidParameterError("give workflow_specification, or workspace_name and workflow_id: one of them")
        return self._pipeline_call(
            "POST", "/initialise",
            video_configuration={
                "type": "VideoConfiguration", "video_reference": video_reference, "max_fps": max_fps,
                "source_buffer_filling_strategy": source_buffer_filling_strategy,
                "source_buffer_consumption_strategy": source_buffer_consumption_strategy,
                "video_source_properties": video_source_properties,
                "batch_collection_timeout": batch_collection_timeout,
            },
            processing_configuration={
                "type": "WorkflowConfiguration", "workflow_specification": workflow_specification,
                "workspace_name": workspace_name, "workflow_id": workflow_id, "image_input_name": image_input_name,
                "workflows_parameters": workflows_parameters,
                "workflows_thread_pool_workers": workflows_thread_pool_workers,
                "cancel_thread_pool_tasks_on_exit": cancel_thread_pool_tasks_on_exit,
                "video_metadata_input_name": video_metadata_input_name,
            },
            sink_configuration={"type": "MemorySinkConfiguration", "results_buffer_size": results_buffer_size},
        )  # fmt: skip

    def start_inference_pipeline(self, model_id: str, video_reference: str | int | list[str | int],
                                 **options: Any) -> dict[str, Any]:  # fmt: skip
        """Ours: one model on every frame; options: max_fps, track, confidence, iou_threshold, class_filter,
        max_detections, video_processing_mode, results_buffer_size, consumption_timeout, outputs."""
        return self._pipeline_call("POST", "/initialise", model_id=model_id, video_reference=video_reference,
                                   **options)  # fmt: skip

    def list_inference_pipelines(self) -> dict[str, Any]:
        return self._pipeline_call("GET", "/list")

    def get_inference_pipeline_status(self, pipeline_id: str) -> dict[str, Any]:
        return self._pipeline_call("GET", f"/{pipeline_id}/status")

    def pause_inference_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        return self._pipeline_call("POST", f"/{pipeline_id}/pause")

    def resume_inference_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        return self._pipeline_call("POST", f"/{pipeline_id}/resume")

    def terminate_inference_pipeline(self, pipeline_id: str) -> dict[str, Any]:
        return self._pipeline_call("POST", f"/{pipeline_id}/terminate")

    def consume_inference_pipeline_result(self, pipeline_id: str, excluded_fields: list[str] | None = None,
                                          max_results: int = 1) -> dict[str, Any]:  # fmt: skip
        """The oldest unread batch (`outputs`, `frames_metadata`), or with `max_results` > 1 up to that many
        (`results`)."""
        path = f"/{pipeline_id}/consume" + (f"?max_results={max_results}" if max_results != 1 else "")
        return self._pipeline_call("GET", path, excluded_fields=excluded_fields or [])
