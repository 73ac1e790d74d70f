"""`visionserve ray serve`: the server as a Ray Serve application, on a local Ray cluster or an existing one."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Annotated

import typer
import yaml

from visionserve.cli.common import console, fail
from visionserve.config import Settings

app = typer.Typer(
    help="Run visionserve on a Ray cluster (needs `pip install visionserve[ray]`).", no_args_is_help=True
)

AddressOption = Annotated[
    str | None,
    typer.Option(help="Ray cluster to deploy to: auto (the one this node joined) or ray://HEAD:10001; "
                 "none: start a local cluster that lives as long as this command."),
]  # fmt: skip


@app.command("serve")
def serve_on_ray(
    replicas: Annotated[int | None, typer.Option(min=1, help="Model-worker replicas (default 2).")] = None,
    models_per_replica: Annotated[
        int | None, typer.Option(min=1, help="Models each worker keeps (default 4).")
    ] = None,
    address: AddressOption = None,
    ingress_replicas: Annotated[
        int | None, typer.Option(min=1, help="HTTP ingress replicas (default 1).")
    ] = None,
    cpus_per_replica: Annotated[
        float | None, typer.Option(min=0, help="CPUs per model worker (default 1).")
    ] = None,
    gpus_per_replica: Annotated[
        float | None, typer.Option(min=0, help="GPUs per model worker (default 0).")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Ray's HTTP proxy bind address (env VISIONSERVE_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Ray's HTTP port (env VISIONSERVE_PORT, default 9001).")
    ] = None,
    num_cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs of a local cluster (default: all).")
    ] = None,
    print_config: Annotated[
        bool, typer.Option(help="Print the Serve config file (for `serve deploy`, KubeRay) and exit.")
    ] = False,
) -> None:
    """Serve every route through Ray's HTTP proxy, inference on model workers routed by model id.

    Layout settings also come from `VISIONSERVE_RAY_*`; every `VISIONSERVE_*` setting reaches every replica."""
    try:
        from visionserve.deploy.ray_serve import RayLayout, build_application, serve_config
    except ImportError:
        raise fail("Ray Serve is not installed: pip install 'visionserve[ray]'") from None
    flags = {
        "worker_replicas": replicas, "models_per_replica": models_per_replica, "ingress_replicas": ingress_replicas,
        "worker_cpus": cpus_per_replica, "worker_gpus": gpus_per_replica,
    }  # fmt: skip
    layout = RayLayout(**{name: value for name, value in flags.items() if value is not None})
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
    # No address: a local cluster of this machine alone, for as long as the command runs.
    ray.init(address=address, num_cpus=num_cpus if address is None else None, log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_application(layout), name=layout.app_name, route_prefix=layout.route_prefix)
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
        serve.shutdown()
        ray.shutdown()
