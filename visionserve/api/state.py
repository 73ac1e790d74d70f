"""Everything the routes share for the life of the server, built once at start-up."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import secrets
import string
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request

from visionserve.api.access import AccessKeys
from visionserve.api.metrics import Metrics
from visionserve.config import Settings
from visionserve.core import InferenceJob, InferenceService, RunLimits
from visionserve.errors import (
    ClientClosedRequest,
    RequestTimeoutError,
    ServiceUnavailableError,
    VisionServeError,
)
from visionserve.images.budget import ServerPixels
from visionserve.images.decode import DecodeLimits
from visionserve.images.fetch import UrlFetcher
from visionserve.images.loader import ImageLoader
from visionserve.models.aliases import resolve_alias
from visionserve.models.builtin import BuiltinModels
from visionserve.models.loader import BatchingChoice, LoadedModel, load_model
from visionserve.models.manager import ModelManager
from visionserve.models.manifest import ModelPackage
from visionserve.models.remote import RemoteModels
from visionserve.models.resolver import ModelResolver, ModelSource
from visionserve.models.store import ModelStore
from visionserve.models.weights_api import WeightsApi, WeightsApiLimits
from visionserve.runtime.cores import CoreBudget
from visionserve.runtime.batching import BatchingPolicy
from visionserve.runtime.engines import SessionBuilds
from visionserve.runtime.onnx_model import OnnxModel, RuntimeOptions
from visionserve.runtime.providers import CPU, DeviceChoice, choose
from visionserve.runtime.threads import ThreadPlan, available_cores, keep_opencv_to_its_caller, plan_threads
from visionserve.streams.manager import PipelineManager

T = TypeVar("T")
logger = logging.getLogger(__name__)


def settings_plan(settings: Settings) -> ThreadPlan:
    return plan_threads(
        available_cores(), settings.intra_op_threads, settings.concurrent_runs, settings.lone_request_threads,
        settings.inference_threads, settings.workers,
    )  # fmt: skip


def settings_device(settings: Settings) -> DeviceChoice:
    """The providers `device` (or an explicit `execution_providers` list) comes to on this machine; probed once
    per process. Raises DeviceUnavailableError for a named device that cannot load here."""
    return choose(settings.device, tuple(settings.execution_providers))


def settings_runtime(
    settings: Settings,
    cores: CoreBudget | None = None,
    plan: ThreadPlan | None = None,
    builds: SessionBuilds | None = None,
) -> RuntimeOptions:
    """Session options from the settings (and their thread plan, when already made); `cores`: the budget every
    model of the process shares; `builds`: the sessions it is creating."""
    plan = plan or settings_plan(settings)
    device = settings_device(settings)
    return RuntimeOptions(
        device.providers, plan.run_threads, plan.concurrent_runs, settings.ort_spinning, plan.lone_threads, cores,
        engine_root=settings.models_dir, tensorrt_fp16=settings.tensorrt_fp16, builds=builds,
        openvino_per_model=device.openvino_per_model,
    )  # fmt: skip


ACCELERATOR_BATCH_DELAY_S = 0.002  # a GPU pass costs about the same for 1 image as for several: worth a wait


def batching_choice(settings: Settings) -> BatchingChoice:
    """Per model: merged passes or not (its per-model setting, else the server's, `auto` meaning off on the CPU
    provider), and how long a merged pass waits for more requests."""

    def choose(model_id: str, runner: OnnxModel) -> BatchingPolicy | None:
        on_cpu = runner.provider == CPU
        enabled = settings.dynamic_batching_models.get(model_id)
        if enabled is None:
            enabled = settings.dynamic_batching == "on" or (settings.dynamic_batching == "auto" and not on_cpu)
        if not enabled:
            return None
        delay_ms = settings.dynamic_batching_delay_ms
        delay_s = (0.0 if on_cpu else ACCELERATOR_BATCH_DELAY_S) if delay_ms is None else delay_ms / 1000
        return BatchingPolicy(settings.max_batch_size, delay_s)

    return choose


def _server_id() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(6))


@dataclass
class ServerState:
    settings: Settings
    store: ModelStore
    manager: ModelManager
    service: InferenceService
    fetcher: UrlFetcher
    executor: ThreadPoolExecutor
    weights_api: WeightsApi | None
    metrics: Metrics
    access_keys: AccessKeys
    builds: SessionBuilds
    server_id: str = field(default_factory=_server_id)
    ready: bool = False
    in_flight: int = 0  # inference jobs accepted and not finished (event loop thread only)
    pipelines: PipelineManager = field(init=False)  # stream pipelines (/inference_pipelines/*)

    def __post_init__(self) -> None:
        self.pipelines = PipelineManager(self.settings.max_pipelines)

    @classmethod
    def build(cls, settings: Settings) -> ServerState:
        store = ModelStore(settings.models_dir, settings.max_store_bytes)
        for stale in store.clean_stale_staging():
            logger.info("removed stale staging %s", stale.name)
        sources: list[ModelSource] = [store, BuiltinModels()]
        weights_api = None
        if settings.weights_api:
            api_limits = WeightsApiLimits(
                max_json_bytes=settings.weights_api_max_json_bytes,
                max_model_bytes=settings.max_model_bytes,
                failed_lookup_ttl_s=settings.failed_lookup_ttl_s,
                allow_hosts=frozenset(host.lower() for host in settings.weights_api_allow_hosts),
            )
            weights_api = WeightsApi(settings.weights_api, settings.weights_api_timeout_s, limits=api_limits)
        remote = [RemoteModels(weights_api, store, settings.weights_api_key)] if weights_api is not None else []
        plan = settings_plan(settings)
        keep_opencv_to_its_caller()
        cores = CoreBudget(plan.concurrent_runs)
        device = settings_device(settings)
        logger.info("%s", device)
        builds = SessionBuilds()
        runtime = settings_runtime(settings, cores, plan, builds)
        metrics = Metrics(cores)
        batching = batching_choice(settings)

        def load(model_id: str, package: ModelPackage) -> LoadedModel:
            with metrics.model_load_seconds.time():
                try:
                    model = load_model(model_id, package, runtime, settings.max_batch_size, batching)
                except VisionServeError:
                    metrics.model_loads.labels(model_id, "failed").inc()
                    raise
            metrics.model_loads.labels(model_id, "loaded").inc()
            return model

        manager = ModelManager(
            ModelResolver(sources, remote), load, max_active=settings.max_active_models, builds=builds
        )
        metrics.count_models_with(lambda: len(manager.loaded()))
        fetcher = UrlFetcher(
            settings.url_timeout_s, settings.url_max_bytes, settings.url_allow_hosts, settings.allow_url_input
        )
        decode_limits = DecodeLimits(settings.max_image_pixels, settings.max_jpeg_scans)
        images = ImageLoader(fetcher, decode_limits, settings.allow_numpy_input)
        limits = RunLimits(
            request_pixels=settings.max_request_pixels,
            server_pixels=ServerPixels(settings.max_server_pixels),
            mask_pixels=settings.max_mask_pixels,
            remote_models=settings.remote_models_allowed,
        )
        service = InferenceService(manager, images, settings.max_batch_images, limits, cores)
        executor = ThreadPoolExecutor(plan.worker_threads, thread_name_prefix="visionserve-worker")
        access_keys = AccessKeys.parse(settings.api_keys)
        return cls(settings, store, manager, service, fetcher, executor, weights_api, metrics, access_keys, builds)

    def request_key(self, presented: str | None) -> str | None:
        """The key to forward to the weights API: the caller's, unless callers' keys are this server's own
        access keys (then the server's configured key is used, and theirs never leaves)."""
        return None if self.access_keys else presented

    async def in_worker(self, function: Callable[..., T], *args: object) -> T:
        """Run blocking work (decode, inference, model loads) off the event loop, in the request's context."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, context.run, function, *args)

    async def run_job(self, request: Request, function: Callable[[InferenceJob], T], job: InferenceJob) -> T:
        """An inference job in a worker thread, under `run_guarded`'s rules."""
        return await self.run_guarded(request, functools.partial(function, job), job.cancelled)

    async def run_guarded(self, request: Request, function: Callable[[], T], cancelled: threading.Event) -> T:
        """Inference work in a worker thread, with back-pressure (503 beyond `max_inflight` jobs), a deadline
        (504), and cancellation when the client goes away (`cancelled` is set), so abandoned work does not hold
        the cores."""
        if self.in_flight >= self.settings.max_inflight:
            raise ServiceUnavailableError(
                f"The server is at capacity ({self.in_flight} requests in flight) - retry request."
            )
        self.in_flight += 1
        self.metrics.in_flight.inc()
        self.metrics.queued.inc()

        def work() -> T:
            self.metrics.queued.dec()
            if cancelled.is_set():
                raise ClientClosedRequest()
            return function()

        future = asyncio.ensure_future(self.in_worker(work))
        future.add_done_callback(self._job_done)
        watcher = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait(
                {future, watcher}, timeout=self.settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # shutdown ran out of grace time: stop the work, answer as JSON
            cancelled.set()
            future.add_done_callback(lambda finished: finished.exception())
            raise ServiceUnavailableError("The server is shutting down - retry request.") from None
        finally:
            watcher.cancel()
        if future in done:
            return future.result()
        cancelled.set()
        future.add_done_callback(lambda finished: finished.exception())  # its outcome no longer matters
        if watcher in done:
            raise ClientClosedRequest()
        raise RequestTimeoutError(f"The request took longer than {self.settings.request_timeout_s:g} s.")

    def _job_done(self, _: asyncio.Future[object]) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.dec()

    async def preload(self) -> None:
        """Load the start-up models, pinned, then report ready. A model that fails is logged and skipped, as the
        reference does, so one bad id does not keep the server out of service."""
        for model_id in self.settings.preload_models:
            try:
                await self.in_worker(self.manager.pin, resolve_alias(model_id), self.settings.weights_api_key)
            except VisionServeError as error:
                logger.error("could not preload model %s: %s", model_id, error.message)
        self.ready = True

    def close(self) -> None:
        self.pipelines.terminate_all()
        self.executor.shutdown(wait=True)
        self.fetcher.close()
        if self.weights_api is not None:
            self.weights_api.close()


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body is read by then, so only a disconnect can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def get_state(request: Request) -> ServerState:
    return request.app.state.visionserve
