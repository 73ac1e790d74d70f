"""visionserve as a Ray Serve application (`pip install visionserve[ray]`): the same FastAPI app, the same
inference path, spread over a cluster.

    HTTP ─▶ HAProxy (every node) ─▶ Ingress replicas: the whole app (`create_app`), every route
                                       │ inference jobs, by model id (`multiplexed_model_id`)
                                       ▼
                                      ModelWorker replicas: InferenceService.run, K models each

Clients name the model in the path or the JSON body, so the ingress routes by itself: the app's inference path
(`InferenceService.run`) is replaced in the ingress by one that sends the job to the model workers with the model
id as Ray's multiplexed model id. Ray then prefers a replica that already holds the model, and each worker keeps at
most `models_per_replica` models: Ray's record and the worker's ModelManager evict in the same LRU order.
Raw `/v2` tensors run on the workers too. Everything else (model management, /metrics, the metadata a `/v2` call
checks its tensors against) is answered by the ingress from its own copy of the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from ray import serve
from ray.exceptions import RayActorError
from ray.serve._private.constants import RAY_SERVE_USE_GRPC_BY_DEFAULT
from ray.serve.config import BackpressureConfig
from ray.serve.deployment import Application
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
    RequestCancelledError,
)
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionserve.api.app import create_app
from visionserve.api.state import ServerState
from visionserve.config import Settings
from visionserve.core import ImageResult, InferenceJob, InferenceService
from visionserve.deploy.ray_proxy import bounded_connections
from visionserve.errors import ClientClosedRequest, ServiceUnavailableError, VisionServeError
from visionserve.models.ids import validate_model_id
from visionserve.streams.manager import PipelineManager

BUILDER_IMPORT_PATH = "visionserve.deploy.ray_serve:build_app"
RAY_PIPELINES = (
    "Stream pipelines do not run under the Ray Serve deployment (a pipeline is a long-lived thread holding its "
    "sources, and the control routes would have to reach the replica running it): run `visionserve serve` for them."
)
LOAD_LOG_MARKER = "visionserve-model-load"  # one line per model load in a worker replica's Serve log
SHARED_ENV_PREFIXES = ("VISIONSERVE_", "ROBOFLOW_API_KEY")
# Keys: handed to replicas as constructor arguments, never as runtime_env variables, which Ray's dashboard, its state
# API and `serve status` show to whoever can reach them.
SECRET_ENV = frozenset({"ROBOFLOW_API_KEY", "VISIONSERVE_WEIGHTS_API_KEY", "VISIONSERVE_API_KEYS"})
POLL_S = 0.25  # how often a waiting ingress thread checks whether its caller left
QUIET = {"enable_access_log": False}  # a line per call and per hop costs CPU; the app logs each request once
UNAVAILABLE = (
    BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError, RequestCancelledError, RayActorError
)  # fmt: skip
logger = logging.getLogger("ray.serve")  # Serve writes this logger to each replica's own log file


class RayLayout(BaseSettings):
    """How the application spreads over the cluster: `VISIONSERVE_RAY_*`, the CLI's flags, or a Serve config
    file's `args` (the KubeRay manifest's), all read by this one class."""

    model_config = SettingsConfigDict(env_prefix="VISIONSERVE_RAY_", extra="forbid")

    app_name: str = Field("visionserve", description="Ray Serve application name.")
    route_prefix: str = "/"
    ingress_replicas: int = Field(1, ge=1, description="Replicas serving HTTP (parse, route, answer).")
    ingress_cpus: float = Field(0.0, ge=0, description="CPUs reserved per ingress replica (it mostly waits).")
    ingress_resources: dict[str, float] = Field(
        {}, description="Custom Ray resources per ingress replica: it runs only on nodes offering them."
    )
    ingress_max_ongoing_requests: int = Field(
        64, ge=1, description="Requests one ingress replica holds at once."
    )
    worker_replicas: int = Field(2, ge=1, description="Model-worker replicas (inference).")
    worker_cpus: float = Field(1.0, ge=0, description="CPUs reserved per model-worker replica.")
    worker_gpus: float = Field(0.0, ge=0, description="GPUs reserved per model-worker replica.")
    worker_resources: dict[str, float] = Field(
        {}, description="Custom Ray resources per model-worker replica (`ray start --resources`), to place them."
    )
    worker_max_ongoing_requests: int = Field(
        4, ge=1, description="Jobs one worker replica runs or queues at once."
    )
    models_per_replica: int = Field(4, ge=1, description="Models a worker replica keeps in memory.")
    max_queued_requests: int = Field(
        64, ge=-1, description="Requests each caller (proxy, ingress) queues per deployment; more get 503."
    )


@dataclasses.dataclass(frozen=True)
class WorkerError:
    """A VisionServeError as it crosses to the ingress: status, message and headers travel, not the class (its
    constructor takes other arguments than the message, so it does not unpickle)."""

    status_code: int
    message: str
    headers: dict[str, str] | None

    def raise_again(self) -> NoReturn:
        error = VisionServeError(self.message)
        error.status_code, error.headers = self.status_code, self.headers
        raise error


def portable(job: InferenceJob) -> dict[str, Any]:
    """The job's fields for another process; the cancellation event stays here (the request is cancelled)."""
    return {
        field.name: getattr(job, field.name) for field in dataclasses.fields(job) if field.name != "cancelled"
    }


@dataclasses.dataclass(frozen=True)
class Secrets:
    """The deploying process's keys, for every replica: Ray pickles a deployment's arguments for its replicas without
    displaying them. `repr` leaves the values out, in case Ray logs an argument."""

    values: dict[str, str] = dataclasses.field(repr=False)

    def apply(self) -> None:
        """In the replica, before any settings are read: the keys become its process environment."""
        os.environ.update(self.values)


class ClusterInference(InferenceService):
    """The ingress's inference path: `run` happens on a model worker chosen by model id; the rest of the service
    (its manager, image limits) stays the ingress's own."""

    def __init__(
        self, local: InferenceService, workers: DeploymentHandle, loop: asyncio.AbstractEventLoop
    ) -> None:
        # The ingress's own manager, image loader and limits, whatever the local service holds.
        vars(self).update(vars(local))
        self._workers = workers
        self._loop = loop  # the replica's event loop, where Ray's handle calls are cheapest

    def run(self, job: InferenceJob) -> list[ImageResult]:
        validate_model_id(job.model_id)  # a 400 here, before it becomes Ray's routing key
        return self._on_worker(job.model_id, "infer", (portable(job),), job.cancelled)

    def run_tensor(self, model_id: str, api_key: str | None, batch: np.ndarray) -> list[np.ndarray]:
        """Raw tensors run where the models do: the ingress reserves no CPU for forward passes."""
        return self._on_worker(model_id, "tensor", (model_id, api_key, batch), None)

    def _on_worker(self, model_id: str, method: str, args: tuple[Any, ...], cancelled: threading.Event | None) -> Any:
        """A worker method's answer, on a worker chosen by model id; a caller who left (or a deadline) cancels the
        remote call (with the awaiting task)."""
        answer = asyncio.run_coroutine_threadsafe(self._call(model_id, method, args), self._loop)
        while True:
            try:
                outcome = answer.result(timeout=POLL_S)
                break
            except TimeoutError:
                if cancelled is not None and cancelled.is_set():
                    answer.cancel()
                    raise ClientClosedRequest() from None
        if isinstance(outcome, WorkerError):
            outcome.raise_again()
        return outcome

    async def _call(self, model_id: str, method: str, args: tuple[Any, ...]) -> Any:
        """One that is gone or full is a 503 the client retries."""
        handle = self._workers.options(multiplexed_model_id=model_id)
        try:
            return await getattr(handle, method).remote(*args)
        except UNAVAILABLE as error:
            raise ServiceUnavailableError(
                f"No model worker could take the request ({type(error).__name__}) - retry request."
            ) from None


def worker_settings(models_per_replica: int, cpus: float) -> Settings:
    """The replica's settings: its model count, and unless set, one forward pass at a time on the CPUs Ray
    reserved for it (the node's other cores belong to other replicas)."""
    settings = Settings()
    return settings.model_copy(
        update={
            "max_active_models": models_per_replica,
            "preload_models": [],  # a model named for preloading belongs to no single replica
            "intra_op_threads": (threads := settings.intra_op_threads or max(1, math.ceil(cpus))),
            "concurrent_runs": settings.concurrent_runs or 1,
            "lone_request_threads": settings.lone_request_threads or threads,  # one session: the CPUs are fixed
        }
    )


class ModelWorkerReplica:
    """Runs inference jobs with its own store, cache and ModelManager (`VISIONSERVE_*` settings as everywhere)."""

    def __init__(self, models_per_replica: int, cpus: float, secrets: Secrets) -> None:
        secrets.apply()
        self._state = ServerState.build(worker_settings(models_per_replica, cpus))

        async def hold(model_id: str) -> str:  # a function: Ray keeps its record on it
            return model_id

        # Ray's record of the models here, by which it routes; the manager holds the models themselves, evicting in
        # the same LRU order. Decorated here, not on the class: the model count is configuration, not a constant.
        self._hold = serve.multiplexed(max_num_models_per_replica=models_per_replica)(hold)

    async def infer(self, job_fields: dict[str, Any]) -> list[ImageResult] | WorkerError:
        job = InferenceJob(**job_fields)
        try:
            return await self._with_model(job.model_id, job.api_key, self._state.service.run, job)
        except asyncio.CancelledError:
            job.cancelled.set()  # the thread checks it between stages
            raise

    async def tensor(self, model_id: str, api_key: str | None, batch: np.ndarray) -> list[np.ndarray] | WorkerError:
        return await self._with_model(model_id, api_key, self._state.service.run_tensor, model_id, api_key, batch)

    async def _with_model(
        self, model_id: str, api_key: str | None, work: Callable[..., Any], *args: Any
    ) -> Any:
        """`work(*args)` on a worker thread once the model is here; an error the caller should see travels back."""
        try:
            # Loaded first, so a model that fails to load never enters Ray's record (or evicts one that is there).
            await self._state.in_worker(self._load, model_id, api_key)
            await self._hold(model_id)
            return await self._state.in_worker(work, *args)
        except VisionServeError as error:
            return WorkerError(error.status_code, error.message, error.headers)

    def _load(self, model_id: str, api_key: str | None) -> None:
        """The model in memory, as the service itself gets it (same rules for remote models, same errors); a load
        (not a cache hit) is logged, so loads can be counted per replica."""
        loads_before = self._onnx_loads()
        self._state.service.model(model_id, api_key)
        if self._onnx_loads() > loads_before:
            logger.info("%s model=%s pid=%d loads=%d", LOAD_LOG_MARKER, model_id, os.getpid(), self._onnx_loads())

    def _onnx_loads(self) -> int:
        return int(
            sum(
                sample.value
                for metric in self._state.metrics.model_loads.collect()
                for sample in metric.samples
                if sample.name.endswith("_total") and sample.labels.get("outcome") == "loaded"
            )
        )

    def __del__(self) -> None:
        self._state.close()


class IngressReplica:
    """Every route of the app, built in the replica (the app holds threads and locks, so it is not shipped)."""

    def __init__(self, workers: DeploymentHandle, threads: int, secrets: Secrets) -> None:
        secrets.apply()
        bounded_connections()  # before the replica's own HTTP server (direct ingress) starts
        # The handle arrives with the deploying process's transport; this node's Ray settings decide it instead:
        # gRPC between replicas in Ray's throughput-optimised mode (3 ms less CPU a request in `make bench-ray`).
        self._workers = workers.options(_by_reference=not RAY_SERVE_USE_GRPC_BY_DEFAULT)
        self._threads = threads

    async def __serve_build_asgi_app__(self) -> FastAPI:
        # Threads only wait on workers here; models named for preloading belong to no single worker.
        app = create_app(Settings(inference_threads=self._threads, preload_models=[]))
        state: ServerState = app.state.visionserve
        state.service = ClusterInference(state.service, self._workers, asyncio.get_running_loop())
        state.pipelines = PipelineManager(0, RAY_PIPELINES)
        app.add_middleware(WithoutRequestIdHeader)
        return app


class WithoutRequestIdHeader:
    """Ray's proxy (under HAProxy, the replica's own server) adds X-Request-ID to every answer (the id the app
    echoes): one copy, not two."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_without_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                del MutableHeaders(scope=message)["x-request-id"]
            await send(message)

        await self._app(scope, receive, send_without_id)


# Deployments wrap the classes under their own names, so the classes stay importable (pickled by reference).
ModelWorker = serve.deployment(name="ModelWorker")(ModelWorkerReplica)
Ingress = serve.deployment(name="Ingress")(serve.ingress()(IngressReplica))


@dataclasses.dataclass(frozen=True)
class ModelLoad:
    """One model load in a worker replica, as its Serve log tells it."""

    replica: str  # the replica's log file name
    model_id: str
    pid: int
    loads_so_far: int  # in that replica, this one included


LOAD_LINE = re.compile(rf"{LOAD_LOG_MARKER} model=(\S+) pid=(\d+) loads=(\d+)")


def model_loads(session_dir: Path) -> list[ModelLoad]:
    """Every model load of every worker replica of a Ray session (`<temp dir>/session_latest`), in log order."""
    return [
        ModelLoad(log.stem, match[1], int(match[2]), int(match[3]))
        for log in sorted((session_dir / "logs" / "serve").glob("replica_*_ModelWorker_*.log"))
        for match in LOAD_LINE.finditer(log.read_text(errors="replace"))
    ]


def shared_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The `VISIONSERVE_*` settings every replica must see, on whichever node, less the keys."""
    return {
        name: value
        for name, value in env.items()
        if name.startswith(SHARED_ENV_PREFIXES) and name not in SECRET_ENV
    }


def build_application(layout: RayLayout, env: Mapping[str, str] = os.environ) -> Application:
    """The Serve application: ingress and model workers, with this process's `VISIONSERVE_*` settings and keys."""
    runtime_env = {"env_vars": shared_settings(env)}
    secrets = Secrets({name: value for name, value in env.items() if name in SECRET_ENV})
    workers = ModelWorker.options(
        num_replicas=layout.worker_replicas,
        ray_actor_options={
            "num_cpus": layout.worker_cpus,
            "num_gpus": layout.worker_gpus,
            "resources": layout.worker_resources,
            "runtime_env": runtime_env,
        },
        max_ongoing_requests=layout.worker_max_ongoing_requests,
        max_queued_requests=layout.max_queued_requests,
        logging_config=QUIET,
    ).bind(layout.models_per_replica, layout.worker_cpus, secrets)
    return Ingress.options(
        num_replicas=layout.ingress_replicas,
        ray_actor_options={
            "num_cpus": layout.ingress_cpus, "resources": layout.ingress_resources, "runtime_env": runtime_env
        },
        max_ongoing_requests=layout.ingress_max_ongoing_requests,
        max_queued_requests=layout.max_queued_requests,
        logging_config=QUIET,
        backpressure_config=BackpressureConfig(retry_after_s=1),
    ).bind(workers, layout.ingress_max_ongoing_requests, secrets)


def build_app(args: dict[str, Any]) -> Application:
    """Ray Serve's application builder (`import_path` of a Serve config file, `serve run ... key=value`)."""
    return build_application(RayLayout.model_validate(args))


def serve_config(layout: RayLayout, host: str, port: int) -> dict[str, Any]:
    """A Serve config file (`serve deploy`, KubeRay's `serveConfigV2`) for this layout."""
    return {
        "http_options": {"host": host, "port": port},
        "applications": [
            {
                "name": layout.app_name,
                "route_prefix": layout.route_prefix,
                "import_path": BUILDER_IMPORT_PATH,
                "args": layout.model_dump(exclude={"app_name", "route_prefix"}),
            }
        ],
    }
