"""Everything the routes share for the life of the server, built once at start-up."""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request

from visionserve.config import Settings
from visionserve.core import InferenceService
from visionserve.images.fetch import UrlFetcher
from visionserve.images.loader import ImageLoader
from visionserve.errors import VisionServeError
from visionserve.models.aliases import resolve_alias
from visionserve.models.builtin import BuiltinModels
from visionserve.models.loader import load_model
from visionserve.models.manager import ModelManager
from visionserve.models.remote import RemoteModels
from visionserve.models.resolver import ModelResolver, ModelSource
from visionserve.models.store import ModelStore
from visionserve.models.weights_api import WeightsApi
from visionserve.runtime.onnx_model import RuntimeOptions, available_cores, plan_threads

T = TypeVar("T")
logger = logging.getLogger(__name__)


def settings_runtime(settings: Settings) -> RuntimeOptions:
    intra, runs = plan_threads(settings.intra_op_threads, settings.concurrent_runs, available_cores())
    return RuntimeOptions(tuple(settings.execution_providers), intra, runs, settings.ort_spinning)


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
    server_id: str = field(default_factory=_server_id)
    ready: bool = False

    @classmethod
    def build(cls, settings: Settings) -> ServerState:
        store = ModelStore(settings.models_dir)
        sources: list[ModelSource] = [store, BuiltinModels()]
        weights_api = WeightsApi(settings.weights_api, settings.weights_api_timeout_s) if settings.weights_api else None
        if weights_api is not None:
            sources.append(RemoteModels(weights_api, store, settings.weights_api_key))
        runtime = settings_runtime(settings)
        manager = ModelManager(
            ModelResolver(sources),
            lambda model_id, package: load_model(model_id, package, runtime, settings.max_batch_size),
            max_active=settings.max_active_models,
        )
        fetcher = UrlFetcher(
            settings.url_timeout_s, settings.url_max_bytes, settings.url_allow_hosts, settings.allow_url_input
        )
        images = ImageLoader(fetcher, settings.max_image_pixels, settings.allow_numpy_input)
        service = InferenceService(manager, images, settings.max_batch_images)
        executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="visionserve-worker")
        return cls(settings, store, manager, service, fetcher, executor, weights_api)

    async def in_worker(self, function: Callable[..., T], *args: object) -> T:
        """Run blocking work (decode, inference, model loads) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

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
        self.executor.shutdown(wait=True)
        self.fetcher.close()
        if self.weights_api is not None:
            self.weights_api.close()


def get_state(request: Request) -> ServerState:
    return request.app.state.visionserve
