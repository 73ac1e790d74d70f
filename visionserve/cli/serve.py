"""`visionserve serve`: the server in the foreground (what `make serve` and `server start` run)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

import typer

from visionserve.cli.common import env_option
from visionserve.config import Settings
from visionserve.logs import log_config

# Defaults are the settings' own (`visionserve.config.Settings`); shown here, applied there.
HostOption = Annotated[
    str | None, env_option(help="Bind address; 0.0.0.0 exposes the server.", envvar="VISIONSERVE_HOST", default="127.0.0.1")
]
PortOption = Annotated[int | None, env_option(help="Port.", envvar="VISIONSERVE_PORT", default="9001")]
WorkersOption = Annotated[int, typer.Option(min=1, help="Worker processes, each with its own models.")]
ModelOption = Annotated[
    list[str] | None,
    env_option(
        "--model", help="Load (and pin) this model before reporting ready; repeatable.",
        envvar="VISIONSERVE_PRELOAD_MODELS", default="none",
    ),
]  # fmt: skip


def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: WorkersOption = 1,
    log_level: Annotated[
        str | None, env_option(help="debug, info, warning or error.", envvar="VISIONSERVE_LOG_LEVEL", default="info")
    ] = None,
    model: ModelOption = None,
) -> None:
    """Run the HTTP server in the foreground."""
    import uvicorn

    flags = {
        "host": host, "port": port, "log_level": log_level, "preload_models": ",".join(model) if model else None,
        "workers": workers,  # each worker process plans its threads for its share of the cores
    }  # fmt: skip
    for name, value in flags.items():
        if value is not None:  # flags win over the environment, also in worker processes
            os.environ[f"VISIONSERVE_{name.upper()}"] = str(value)
    settings = Settings()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the handler it found: make that
    # handler exit 0, so supervisors (systemd, Kubernetes) see a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "visionserve.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=False,  # visionserve.access writes one richer line per request
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        http="visionserve.api.http_guard:BoundedHttpProtocol",  # header size, count and time limits
    )
