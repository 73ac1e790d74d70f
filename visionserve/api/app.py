"""The FastAPI application: wiring only; behaviour lives in the routes and the core."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from visionserve import __version__
from visionserve.api.access import AccessControl
from visionserve.api.context import RequestContext
from visionserve.api.errors import install_error_handlers
from visionserve.api.limits import BodySizeLimit
from visionserve.api.offline_docs import docs_paths, documented_app
from visionserve.api.oip.errors import ProtocolErrors
from visionserve.api.routes import (
    inference_pipelines, infer, legacy, models, oip, playground, service, stream_uploads, workflows,
)  # fmt: skip
from visionserve.api.security_headers import NoSniff
from visionserve.api.state import ServerState
from visionserve.config import Settings
from visionserve.runtime.memory import limit_malloc_arenas

logger = logging.getLogger(__name__)
HEALTH_PATHS = frozenset({"/healthz", "/readiness", "/info", "/v2", "/v2/health/live", "/v2/health/ready"})


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, with one operation id per method of a route that takes several (FastAPI gives a route
    one): the legacy route, `/workflows/blocks/describe`."""
    if app.openapi_schema is None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Duplicate Operation ID")
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                license_info=app.license_info, routes=app.routes,
            )  # fmt: skip
        for operations in schema["paths"].values():
            ids = [operation.get("operationId") for operation in operations.values()]
            for method, operation in operations.items():
                if ids.count(operation.get("operationId")) > 1:
                    operation["operationId"] = f"{operation['operationId']}_{method}"
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    limit_malloc_arenas(settings.malloc_arenas)  # before the worker threads allocate
    state = ServerState.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not state.access_keys and not _is_loopback(settings.host):
            logger.warning(
                "no VISIONSERVE_API_KEYS: anyone who can reach %s:%d may run and manage models",
                settings.host, settings.port,
            )  # fmt: skip
        state.metrics.cpu.watch_event_loop()
        preloading = asyncio.create_task(state.preload())
        try:
            yield
        finally:
            preloading.cancel()
            state.close()

    app = documented_app(
        title="visionserve",
        version=__version__,
        description="Self-hosted inference for computer-vision models, compatible with the Roboflow Inference API.",
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        lifespan=lifespan,
    )
    app.state.visionserve = state
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    # Innermost first: access control reads bodies within the size limit; every answer gets a request id.
    if state.access_keys:
        open_paths = HEALTH_PATHS | playground.public_paths() | (docs_paths() if settings.docs_public else frozenset())
        open_paths |= frozenset({"/metrics"}) if settings.metrics_public else frozenset()
        app.add_middleware(AccessControl, keys=state.access_keys, open_paths=open_paths)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(ProtocolErrors)  # /v2 errors as {"error"}, access control's and the body limit's too
    app.add_middleware(RequestContext, metrics=state.metrics, json_logs=settings.log_json)
    app.add_middleware(NoSniff)  # outermost: every answer, the other middlewares' refusals too
    app.include_router(service.router)
    app.include_router(infer.router)
    app.include_router(oip.router)  # before legacy: /v2/{endpoint} must not reach it
    app.include_router(models.router)
    app.include_router(workflows.router)  # before legacy: /workflows/run and /infer/workflows are two segments
    app.include_router(inference_pipelines.router)  # before legacy: /inference_pipelines/list is two segments
    app.include_router(stream_uploads.router)
    app.include_router(playground.router)
    playground.mount_playground(app)
    app.include_router(legacy.router)  # last: its two-segment path would shadow any route added after it
    return app
