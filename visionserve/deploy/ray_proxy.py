"""Ray's HTTP proxy with the single-process server's connection bounds (header bytes, header count, the time to
send them: `visionserve.api.http_guard`), so a slow or huge request line cannot hold a proxy any more than it can
hold `visionserve serve`.

Ray offers no setting for its proxy's HTTP protocol class, only a start-up hook: each proxy imports and calls the
function named by `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH` in its own process before it listens. Its uvicorn
resolves the protocol name `auto` from `uvicorn.config.HTTP_PROTOCOLS` when its server starts, after that call, so
the hook points that name at the bounded protocol. The variable must be in the environment of every node's Ray
processes: `visionserve ray serve` sets it for the local cluster it starts; `ray start` on other machines and the
KubeRay manifest set it themselves.
"""

from __future__ import annotations

import uvicorn.config

CALLBACK_VARIABLE = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "visionserve.deploy.ray_proxy:bounded_connections"
BOUNDED_PROTOCOL = "visionserve.api.http_guard:BoundedHttpProtocol"


def bounded_connections() -> list[object]:
    """Ray's proxy start-up hook: its connections get the bounded protocol; no ASGI middleware is added."""
    uvicorn.config.HTTP_PROTOCOLS["auto"] = BOUNDED_PROTOCOL
    return []
