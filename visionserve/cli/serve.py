"""`visionserve serve`: the server in the foreground (what `make serve` and `server start` run)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated

from pydantic import ValidationError

from visionserve.cli.common import fail, setting_option
from visionserve.cli.running_servers import port_refusal, registered
from visionserve.config import Settings
from visionserve.logs import log_config

# Defaults are the settings' own (`visionserve.config.Settings`); shown here, applied there.
HostOption = Annotated[str | None, setting_option("host", help="Bind address; 0.0.0.0 exposes the server.")]
PortOption = Annotated[int | None, setting_option("port", help="Port.")]
WorkersOption = Annotated[
    int | None, setting_option("workers", help="Worker processes, each with its own models.", min=1)
]
ModelOption = Annotated[
    list[str] | None,
    setting_option("preload_models", "--model", help="Load (and pin) this model before reporting ready; repeatable."),
]
DeviceOption = Annotated[
    str | None,
    setting_option("device", help="auto, cpu, cuda, tensorrt or openvino; a named one that cannot load here stops "
                   "the server before it starts."),
]  # fmt: skip
LogLevelOption = Annotated[str | None, setting_option("log_level", help="debug, info, warning or error.")]


def serve(
    *,
    host: HostOption,
    port: PortOption,
    workers: WorkersOption,
    device: DeviceOption,
    log_level: LogLevelOption,
    model: ModelOption,
) -> None:
    """Run the HTTP server in the foreground."""
    import uvicorn

    flags = {
        "host": host, "port": port, "log_level": log_level, "preload_models": ",".join(model) if model else None,
        "device": device, "workers": workers,  # each worker process plans its threads for its share of the cores
    }  # fmt: skip
    for name, value in flags.items():
        if value is not None:  # flags win over the environment, also in worker processes
            os.environ[f"VISIONSERVE_{name.upper()}"] = str(value)
    try:
        settings = Settings()
    except ValidationError as error:
        raise fail("; ".join(problem["msg"] for problem in error.errors())) from None
    if settings.device != "auto":  # auto always finds something; a named device must load, or nothing starts
        from visionserve.api.state import settings_device
        from visionserve.runtime.providers import DeviceUnavailableError

        try:
            settings_device(settings)
        except DeviceUnavailableError as error:
            raise fail(str(error)) from None
    refusal = port_refusal(settings)  # before uvicorn, which would load the app first and then fail to bind
    if refusal is not None:
        raise fail(refusal)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal to the handler it found: make that
    # handler exit 0, so supervisors (systemd, Kubernetes) see a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with registered(settings):
        uvicorn.run(
            "visionserve.api.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=log_config(settings.log_level),
            access_log=False,  # visionserve.access writes one richer line per request
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
            http="visionserve.api.http_guard:BoundedHttpProtocol",  # header size, count and time limits
        )
