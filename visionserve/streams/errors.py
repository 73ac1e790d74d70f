"""Errors of the pipeline routes, each with its status code and a message that says what to do."""

from __future__ import annotations

from visionserve.errors import VisionServeError


class PipelineNotFound(VisionServeError):
    status_code = 404

    def __init__(self, pipeline_id: str) -> None:
        super().__init__(f"No pipeline {pipeline_id!r} on this server (GET /inference_pipelines/list lists them).")


class PipelineRefused(VisionServeError):
    """The payload cannot start a pipeline (a bad source, a path outside the allowed folders, a cap)."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code
