"""The FastAPI application: wiring only; behaviour lives in the routes and the core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from visionserve import __version__
from visionserve.api.errors import install_error_handlers
from visionserve.api.limits import BodySizeLimit
from visionserve.api.routes import infer, legacy, models, service
from visionserve.api.state import ServerState
from visionserve.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServerState.build(settings)
        app.state.visionserve = state
        preloading = asyncio.create_task(state.preload())
        try:
            yield
        finally:
            preloading.cancel()
            state.close()

    app = FastAPI(
        title="visionserve",
        version=__version__,
        description="Self-hosted inference for computer-vision models, compatible with the Roboflow Inference API.",
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(service.router)
    app.include_router(infer.router)
    app.include_router(models.router)
    app.include_router(legacy.router)  # last: its two-segment path would shadow any route added after it
    return app
