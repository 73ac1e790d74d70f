"""`visionserve ray serve`: the server as a Ray Serve application, on a local Ray cluster or an existing one."""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import suppress
from typing import Annotated, Any

import httpx
import typer
import yaml
from pydantic import ValidationError
from pydantic_settings import SettingsError

from visionserve.cli.common import Shown, console, env_option, env_prefix, fail, setting_option
from visionserve.config import Settings
from visionserve.server_process import free_port, port_in_use_message, port_taken, reachable_url

# A stopping ingress replica stays open this long so that load balancers stop sending to it first. Ray's default (30
# s) is for balancers elsewhere; the local cluster's own HAProxy hears of it within a fraction of a second, and the
# drain still waits for requests in flight. With the default, every Ctrl-C took 30 s.
LOCAL_CLUSTER_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2"}


def layout_problem(error: ValidationError | SettingsError) -> str:
    """The variable at fault and what is wrong with it, in one line."""
    if isinstance(error, SettingsError):  # a value that is not JSON where the field takes a mapping
        field = str(error).split('"')[1] if str(error).count('"') >= 2 else "?"
        return f"VISIONSERVE_RAY_{field.upper()} is not valid JSON (e.g. '{{\"gpu-node\": 1}}')"
    problem = error.errors()[0]
    return f"VISIONSERVE_RAY_{str(problem['loc'][0]).upper()}: {problem['msg']}"


def wait_until_serving(host: str, port: int, route_prefix: str, timeout_s: float = 120.0) -> None:
    """Once the application is deployed, HAProxy takes a moment to route to it: the command says it serves only
    when it does."""
    url = f"{reachable_url(host, port)}{route_prefix.rstrip('/')}/healthz"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.25)
    raise fail(f"the application deployed, but {url} did not answer within {timeout_s:.0f} s")


app = typer.Typer(  # help is Rich markup: the backslash keeps the extra's brackets
    help="Run visionserve on a Ray cluster (needs `pip install 'visionserve\\[ray]'`).", no_args_is_help=True,
    context_settings=env_prefix("ray"),
)

AddressOption = Annotated[
    str | None,
    typer.Option(help="Ray cluster to deploy to: auto (the one this node joined) or ray://HEAD:10001; "
                 "none: start a local cluster that lives as long as this command.", default_factory=Shown("none")),
]  # fmt: skip


def _layout_option(name: str, help: str, default: str, **checks: float) -> Any:
    """An option for the `RayLayout` field `name`, which also reads VISIONSERVE_RAY_<NAME>."""
    return env_option(help=help, envvar=f"VISIONSERVE_RAY_{name.upper()}", default=default, **checks)


@app.command("serve")
def serve_on_ray(
    *,
    replicas: Annotated[int | None, _layout_option("worker_replicas", "Model-worker replicas.", "2", min=1)],
    models_per_replica: Annotated[
        int | None, _layout_option("models_per_replica", "Models each worker keeps.", "4", min=1)
    ],
    address: AddressOption,
    ingress_replicas: Annotated[
        int | None, _layout_option("ingress_replicas", "HTTP ingress replicas.", "1", min=1)
    ],
    cpus_per_replica: Annotated[float | None, _layout_option("worker_cpus", "CPUs per model worker.", "1", min=0)],
    gpus_per_replica: Annotated[float | None, _layout_option("worker_gpus", "GPUs per model worker.", "0", min=0)],
    host: Annotated[str | None, setting_option("host", help="HTTP bind address (HAProxy's, on every node).")],
    port: Annotated[int | None, setting_option("port", help="Ray's HTTP port.")],
    num_cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs of a local cluster.", default_factory=Shown("all"))
    ],
    print_config: Annotated[
        bool, typer.Option(help="Print the Serve config file (for `serve deploy`, KubeRay) and exit.")
    ] = False,
) -> None:
    """Serve every route through HAProxy and ingress replicas, inference on model workers routed by model id.

    Layout settings also come from `VISIONSERVE_RAY_*`; every `VISIONSERVE_*` setting reaches every replica."""
    try:
        from visionserve.deploy.ray_proxy import node_environment
        from visionserve.deploy.ray_serve import RayLayout, build_application, serve_config
    except ImportError:
        raise fail("Ray Serve is not installed: pip install 'visionserve[ray]'") from None
    flags = {
        "worker_replicas": replicas, "models_per_replica": models_per_replica, "ingress_replicas": ingress_replicas,
        "worker_cpus": cpus_per_replica, "worker_gpus": gpus_per_replica,
    }  # fmt: skip
    try:
        layout = RayLayout(**{name: value for name, value in flags.items() if value is not None})
    except (ValidationError, SettingsError) as error:  # a `VISIONSERVE_RAY_*` variable no flag checked
        raise fail(f"Ray layout setting: {layout_problem(error)}") from None
    settings = Settings()
    host, port = host or settings.host, port or settings.port
    if print_config:
        console.print(
            yaml.safe_dump(serve_config(layout, host, port), sort_keys=False), end="", soft_wrap=True
        )
        return

    import ray
    from ray import serve

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a self-hosted server reports nothing home
    if address is None:  # a local cluster's processes inherit these: HAProxy in front, with the server's bounds
        if port_taken(host, port):  # e.g. an HAProxy that outlived a killed cluster: it would share the port
            raise fail(port_in_use_message(host, port))  # (SO_REUSEPORT) and answer for nothing
        # HAProxy's metrics and statistics listeners (all interfaces: Ray's template names no host) get free ports,
        # so a second local cluster on the machine does not collide with the first.
        haproxy_ports = {"RAY_SERVE_HAPROXY_METRICS_PORT": free_port(), "RAY_SERVE_HAPROXY_STATS_PORT": free_port()}
        for name, value in {**node_environment(settings), **LOCAL_CLUSTER_ENV, **haproxy_ports}.items():
            os.environ.setdefault(name, str(value))
    # No address: a local cluster of this machine alone, for as long as the command runs.
    ray.init(address=address, num_cpus=num_cpus if address is None else None, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_application(layout), name=layout.app_name, route_prefix=layout.route_prefix)
    if address is None:
        wait_until_serving(host, port, layout.route_prefix)
    console.print(
        f"visionserve on Ray: http://{host}:{port}{layout.route_prefix.rstrip('/')} "
        f"({layout.worker_replicas} model workers x {layout.models_per_replica} models); "
        f"Ray cluster at {ray.get_runtime_context().gcs_address}",
        soft_wrap=True,
    )
    if address is not None:
        return  # the application stays on the cluster; `serve shutdown` removes it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        # The application first: its replicas drain (requests in flight are answered) while HAProxy still runs;
        # `serve.shutdown` alone kills HAProxy at once, cutting them.
        serve.delete(layout.app_name)
        serve.shutdown()
        ray.shutdown()
