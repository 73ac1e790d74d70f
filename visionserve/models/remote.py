"""Models fetched from a weights API on first use and kept in the local store, so later loads (and restarts)
need no network at all."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable

from filelock import FileLock, Timeout

from visionserve.errors import ServiceUnavailableError, TaskNotSupportedError
from visionserve.models.inspect import check_runnable
from visionserve.models.manifest import ModelPackage, Task
from visionserve.models.roboflow import CLASS_NAMES_FILE, ENVIRONMENT_FILE, manifest_from_environment
from visionserve.models.store import ModelStore
from visionserve.models.weights_api import Progress, RemoteModel, WeightsApi

logger = logging.getLogger(__name__)

# Roboflow model types whose ONNX exports have YOLO output layouts; others (RF-DETR, YOLO-NAS, ViT...) differ.
_YOLO_PREFIXES = ("yolov5", "yolov7", "yolov8", "yolov9", "yolov10", "yolov11", "yolo11", "yolov12", "yolo26")
_SERVED_TASKS = {task.value: task for task in Task}


def _task_of(remote: RemoteModel, model_id: str) -> Task:
    task = _SERVED_TASKS.get(remote.task_type)
    if task is None:
        raise TaskNotSupportedError(f"Model {model_id} is a {remote.task_type} model, which this server cannot serve.")
    model_type = (remote.model_type or "").lower()
    if model_type and model_type != "ort" and not model_type.startswith(_YOLO_PREFIXES):
        raise TaskNotSupportedError(
            f"Model {model_id} is a {remote.model_type} model; this server runs YOLO-family ONNX models."
        )
    return task


class RemoteModels:
    """A model source: download into the store, under a per-model file lock shared by all server processes."""

    def __init__(
        self,
        api: WeightsApi,
        store: ModelStore,
        default_api_key: str | None = None,
        progress: Callable[[str], Progress] | None = None,
        lock_timeout_s: float = 600.0,
    ) -> None:
        self.api = api
        self.store = store
        self.default_api_key = default_api_key
        self.progress = progress or self._log_progress
        self.lock_timeout_s = lock_timeout_s

    def find(self, model_id: str, api_key: str | None = None) -> ModelPackage | None:
        try:
            with FileLock(self.store.lock_path(model_id), timeout=self.lock_timeout_s):
                stored = self.store.find(model_id)  # another process may have finished it meanwhile
                return stored or self._download(model_id, api_key or self.default_api_key)
        except Timeout:
            raise ServiceUnavailableError(f"Model {model_id} is still being downloaded - retry request.") from None

    def _download(self, model_id: str, api_key: str | None) -> ModelPackage:
        remote = self.api.describe(model_id, api_key)
        task = _task_of(remote, model_id)
        started = time.perf_counter()
        logger.info("downloading model %s (%s, %s)", model_id, remote.task_type, remote.model_type or "unknown type")
        staging = self.store.staging_directory()
        try:
            weights = staging / "weights.onnx"
            self.api.download(remote.weights_url, weights, self.progress(model_id))
            manifest = manifest_from_environment(
                model_id,
                task,
                remote.environment,
                class_names=remote.class_names,
                colors=remote.colors,
                model_type=remote.model_type,
                source=f"weights API {self.api.base_url}",
            )
            check_runnable(weights, manifest)  # a broken download never reaches the store
            extra = {ENVIRONMENT_FILE: json.dumps(remote.environment, indent=2).encode()}
            if remote.class_names:
                extra[CLASS_NAMES_FILE] = "\n".join(remote.class_names).encode()
            package = self.store.add(weights, manifest, replace=True, move=True, extra_files=extra)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info(
            "model %s stored in %s (%.1f MB, %.1f s)",
            model_id,
            package.weights_path.parent,
            package.weights_path.stat().st_size / 1e6,
            time.perf_counter() - started,
        )
        return package

    @staticmethod
    def _log_progress(model_id: str) -> Progress:
        """Log every 25% of a download (or every 10 MB when the size is unknown)."""
        reported = [0]

        def report(done: int, total: int | None) -> None:
            step = total // 4 if total else 10_000_000
            if step and done // step > reported[0]:
                reported[0] = done // step
                share = f"{100 * done // total}%" if total else f"{done / 1e6:.0f} MB"
                logger.info("downloading model %s: %s", model_id, share)

        return report
