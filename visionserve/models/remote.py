"""Models fetched from a weights API on first use and kept in the local store, so later loads (and restarts)
need no network at all.

What the API serves is checked before it reaches the store: a package that cannot be served (environment.json
that makes no sense, weights that do not load, declared sizes past the limits) is the API's fault, a 502.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable

from filelock import Timeout

from visionserve.errors import ModelPackageError, ServiceUnavailableError, TaskNotSupportedError, with_article
from visionserve.models.inspect import check_runnable
from visionserve.models.keypoint_schema import KEYPOINTS_METADATA_FILE, parse_keypoint_schema
from visionserve.models.manifest import ModelFamily, ModelPackage, Task
from visionserve.models.roboflow import CLASS_NAMES_FILE, ENVIRONMENT_FILE, manifest_from_environment
from visionserve.models.store import ModelStore
from visionserve.models.remote_description import RemoteModel
from visionserve.models.weights_api import Progress, WeightsApi
from visionserve.models.weights_api_errors import WeightsApiBadResponse, WeightsApiUnavailable, WeightsApiUnreachable

logger = logging.getLogger(__name__)

# Roboflow model types by the family of their ONNX exports (DeepLabV3+ follows its package's own pre-processing,
# as the YOLO family does).
_FAMILY_PREFIXES = {
    ModelFamily.YOLO: (
        "yolov5", "yolov7", "yolov8", "yolov9", "yolov10", "yolov11", "yolo11", "yolov12", "yolo26", "deeplabv3plus"
    ),
    ModelFamily.RFDETR: ("rfdetr",),
    ModelFamily.YOLO_NAS: ("yolo_nas", "yolo-nas"),
}
_CLASSIFIER_PREFIXES = ("vit", "resnet")  # plain classifiers: the YOLO family's classification code serves them
_SERVED_TASKS = {task.value: task for task in Task}


def _family_and_task(remote: RemoteModel, model_id: str) -> tuple[ModelFamily, Task]:
    """The family whose pre- and post-processing the model needs. A type missing (or `ort`) is the reference's
    default for the task: YOLOv5 for detection, ViT for classification, both served by the YOLO family's code."""
    task = _SERVED_TASKS.get(remote.task_type)
    if task is None:
        raise TaskNotSupportedError(f"Model {model_id} is {with_article(remote.task_type)} model, which this server cannot serve.")
    model_type = (remote.model_type or "").lower()
    if not model_type or model_type == "ort":
        return ModelFamily.YOLO, task
    if task is Task.CLASSIFICATION and model_type.startswith(_CLASSIFIER_PREFIXES):
        return ModelFamily.YOLO, task
    family = next((family for family, prefixes in _FAMILY_PREFIXES.items() if model_type.startswith(prefixes)), None)
    if family is None:
        raise TaskNotSupportedError(
            f"Model {model_id} is {with_article(str(remote.model_type))} model; this server runs YOLO-family, RF-DETR, "
            "YOLO-NAS, ViT, ResNet and DeepLabV3+ ONNX models."
        )
    return family, task


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
            with self.store.locked(model_id, self.lock_timeout_s):
                stored = self.store.find(model_id)  # another process may have finished it meanwhile
                if stored is not None:
                    return stored
                remote = self._describe(model_id, api_key or self.default_api_key)
                self.store.discard_leftovers(model_id)  # we hold the lock: a killed download's, never a live one's
                return self._download(model_id, remote)
        except Timeout:
            raise ServiceUnavailableError(f"Model {model_id} is still being downloaded - retry request.") from None

    def _describe(self, model_id: str, api_key: str | None) -> RemoteModel:
        """The API's description. Unreachable, it cannot tell whether the model exists, unless a download of
        it began before: then the model is known to exist and this is an outage."""
        try:
            return self.api.describe(model_id, api_key)
        except WeightsApiUnreachable as error:
            if not self.store.has_partial_download(model_id):
                raise
            raise WeightsApiUnavailable(
                f"A download of model {model_id} began earlier, so the weights API has it, but now: {error.message}"
            ) from None

    def _download(self, model_id: str, remote: RemoteModel) -> ModelPackage:
        family, task = _family_and_task(remote, model_id)
        started = time.perf_counter()
        logger.info("downloading model %s (%s, %s)", model_id, remote.task_type, remote.model_type or "unknown type")
        staging = self.store.staging_directory(model_id)
        try:
            weights = staging / "weights.onnx"
            try:  # the description is checked before the weights are fetched: a package refused costs no download
                keypoint_names = self._keypoint_names(remote, task)
                manifest = manifest_from_environment(
                    model_id,
                    task,
                    remote.environment,
                    class_names=remote.class_names,
                    colors=remote.colors,
                    model_type=remote.model_type,
                    family=family,
                    source=f"weights API {self.api.base_url}",
                    keypoint_names=keypoint_names,
                )
                self.api.download(remote.weights_url, weights, self.progress(model_id))
                check_runnable(weights, manifest)  # a broken download never reaches the store
            except ModelPackageError as error:
                raise WeightsApiBadResponse(
                    f"The weights API served a broken package for {model_id}: {error.detail}"
                ) from None
            extra = {ENVIRONMENT_FILE: json.dumps(remote.environment, indent=2).encode()}
            if remote.class_names:
                extra[CLASS_NAMES_FILE] = "\n".join(remote.class_names).encode()
            if keypoint_names:
                extra[KEYPOINTS_METADATA_FILE] = json.dumps(remote.keypoints_metadata, indent=2).encode()
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
    def _keypoint_names(remote: RemoteModel, task: Task) -> dict[int, list[str]] | None:
        """A keypoint model's point names per class, from the `keypoints_metadata` the API sent with it (the
        reference names no point without them: keypoints beyond a class's names are never answered)."""
        if task is not Task.KEYPOINT_DETECTION or remote.keypoints_metadata is None:
            return None
        return parse_keypoint_schema(remote.keypoints_metadata, "keypoints_metadata")

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
