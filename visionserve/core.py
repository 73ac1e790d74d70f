"""The one inference path every wire protocol adapts to: model → images → predictions → response JSON.

It runs in a worker thread: image decoding and ONNX Runtime release the GIL, so requests overlap and the
event loop stays free for HTTP.
"""

from __future__ import annotations

import base64
import contextvars
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from visionserve.errors import ClientClosedRequest, InvalidRequestError, with_article
from visionserve.http_deadline import cancellation
from visionserve.images.annotate import annotate
from visionserve.images.budget import RequestPixels, ServerPixels
from visionserve.images.decode import DecodedImage, NeededScale
from visionserve.images.loader import ImageLoader
from visionserve.images.sources import ImageSpec
from visionserve.models.loader import LoadedModel
from visionserve.models.manager import ModelManager
from visionserve.models.manifest import Task
from visionserve.models.weights_api_errors import WeightsApiTimeout, WeightsApiUnavailable
from visionserve.observe import note_model, timed
from visionserve.runtime.cores import CoreBudget
from visionserve.runtime.onnx_model import RUNTIME_ERRORS
from visionserve.runtime.parallel import cpu_map
from visionserve.tasks.masks import MaskBudget, mask_budget

# Upper bounds of request options whose cost grows with their value (candidate boxes, kept detections).
OPTION_LIMITS = {"max_candidates": 10_000, "max_detections": 5_000}


def check_option_limits(options: Mapping[str, Any]) -> None:
    """Refuse options over `OPTION_LIMITS`, whichever route (and field type) they came by."""
    for name, limit in OPTION_LIMITS.items():
        try:
            value = int(options.get(name) or 0)
        except (TypeError, ValueError):
            continue  # not a number: the task's own option parsing answers that
        if value > limit:
            raise InvalidRequestError(f"{name} is {value}, more than this server accepts ({limit}).")


def too_many_images(count: int, limit: int) -> InvalidRequestError:
    return InvalidRequestError(
        f"Too many images in one request: {count}, the limit is {limit} (VISIONSERVE_MAX_BATCH_IMAGES)."
    )


@dataclass(frozen=True)
class InferenceJob:
    """A protocol-neutral request: which model, which images, and the task options as plain values."""

    model_id: str
    images: list[ImageSpec]
    request_id: str
    as_list: bool = False  # the caller sent a list, so it gets a list back, even of one
    options: Mapping[str, Any] = field(default_factory=dict)
    auto_orient: bool = True
    expected_task: Task | None = None  # None: the model's own task decides (legacy route)
    api_key: str | None = None  # only ever forwarded to the weights API
    cancelled: threading.Event = field(default_factory=threading.Event)  # the client left, or time ran out


@dataclass(frozen=True)
class ImageResult:
    response: dict[str, Any]  # this image's JSON object, as the reference shapes it
    visualization: bytes | None  # the annotated JPEG, when asked for


@dataclass(frozen=True)
class RunLimits:
    """Server-side bounds on what one job may cost, beyond the image count."""

    request_pixels: int  # decoded pixels one request may hold
    server_pixels: ServerPixels  # shared by every request in flight
    mask_pixels: int  # mask pixels one request may compute
    remote_models: bool = True  # a job may fetch a model the store lacks


class InferenceService:
    def __init__(
        self,
        manager: ModelManager,
        images: ImageLoader,
        max_batch_images: int,
        limits: RunLimits | None = None,
        cores: CoreBudget | None = None,
    ) -> None:
        self.manager = manager
        self.images = images
        self.max_batch_images = max_batch_images
        self.limits = limits
        self.cores = cores or CoreBudget(1)  # counts jobs in flight: a lone one's passes may use every core

    def run(self, job: InferenceJob) -> list[ImageResult]:
        """The job's answers, computed in a context of its own: its cancellation and mask budget end with it, so the
        thread that called (the workflow engine's, a stream pipeline's) carries neither into its next work."""
        with self.cores.job():
            return contextvars.copy_context().run(self._checked_run, job)

    def _checked_run(self, job: InferenceJob) -> list[ImageResult]:
        if not job.images:
            raise InvalidRequestError("The request contains no image.")
        if len(job.images) > self.max_batch_images:
            raise too_many_images(len(job.images), self.max_batch_images)
        check_option_limits(job.options)
        cancellation.set(job.cancelled)  # its downloads stop when it is cancelled
        model = self.model(job.model_id, job.api_key)
        if job.expected_task is not None and model.task is not job.expected_task:
            raise InvalidRequestError(
                f"Model {job.model_id} is {with_article(model.task.value)} model, but this route serves "
                f"{job.expected_task.value} models."
            )
        if self.limits is None:
            return self._run(job, model, None)
        mask_budget.set(MaskBudget(self.limits.mask_pixels))
        with RequestPixels(self.limits.request_pixels, self.limits.server_pixels) as pixels:
            return self._run(job, model, pixels)  # the pixels stay booked until the answers are made

    def _run(self, job: InferenceJob, model: LoadedModel, pixels: RequestPixels | None) -> list[ImageResult]:
        started = time.perf_counter()
        visualize = bool(job.options.get("visualize_predictions"))
        needed = None if visualize else model.predictor.needed_scale(job.options)  # drawings need every pixel
        images = cpu_map(lambda spec: self._decoded(spec, job.auto_orient, needed, pixels), job.images)
        if job.cancelled.is_set():  # no one is waiting for the answer: leave the cores to others
            raise ClientClosedRequest()
        note_model(job.model_id, [(image.width, image.height) for image in images])
        fields = model.predictor.predict(images, job.options)
        elapsed = time.perf_counter() - started
        results = []
        for image, image_fields in zip(images, fields):
            response = {
                "inference_id": job.request_id,
                "time": elapsed,
                "image": {"width": image.width, "height": image.height},
                **image_fields,
            }
            visualization = None
            if visualize:
                visualization = annotate(
                    image.pixels,
                    response,
                    stroke=job.options.get("visualization_stroke_width") or 1,
                    labels=bool(job.options.get("visualization_labels")),
                )
            results.append(ImageResult(response, visualization))
        return results

    def _decoded(
        self, spec: ImageSpec, auto_orient: bool, needed: NeededScale | None, pixels: RequestPixels | None
    ) -> DecodedImage:
        with timed("decode"):  # per image, on the thread that decodes it (a batch's images decode side by side)
            return self.images.load(spec, auto_orient, needed, pixels)

    def model(self, model_id: str, api_key: str | None) -> LoadedModel:
        """The model in memory, loaded (or fetched, where remote models are allowed) if it is not."""
        try:
            return self.manager.get(model_id, api_key, self.limits is None or self.limits.remote_models)
        except (WeightsApiUnavailable, WeightsApiTimeout) as error:  # say which lookup failed, not just how
            raise type(error)(
                f"Model {model_id} is neither in this server's store nor built in, and looking it up failed: "
                f"{error.message}"
            ) from None

    def run_tensor(self, model_id: str, api_key: str | None, batch: np.ndarray) -> list[np.ndarray]:
        """The model's own outputs (in its order) for its own input tensor, checked by the caller: a job like any
        other, so lone requests see it as company. A tensor the model cannot take is the caller's error."""
        runner = self.model(model_id, api_key).predictor.runner
        note_model(model_id, [(batch.shape[3], batch.shape[2])] * batch.shape[0])
        try:
            with self.cores.job(), timed("inference"):
                return runner.run(batch, may_widen=True)
        except RUNTIME_ERRORS as error:
            raise InvalidRequestError(f"The model cannot run this tensor: {error}") from None

    def run_json(self, job: InferenceJob) -> bytes:
        results = self.run(job)
        with timed("respond"):
            responses = [with_visualization(result) for result in results]
            return orjson.dumps(responses if job.as_list else responses[0])


def with_visualization(result: ImageResult) -> dict[str, Any]:
    """The response object, led by the base64 JPEG when there is one (the reference's key order)."""
    if result.visualization is None:
        return result.response
    return {"visualization": base64.b64encode(result.visualization).decode("ascii"), **result.response}
