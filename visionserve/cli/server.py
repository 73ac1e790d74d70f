"""`visionserve server start|stop|status|logs`: servers in the background, and the status of every running one.

Every server lists itself under $VISIONSERVE_HOME/servers (`running_servers`); a background one logs to
`server.log` there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import deque
from typing import Annotated

import httpx
import typer
from rich.table import Table

from visionserve.cli.client_options import ApiKeyOption, bearer
from visionserve.cli.common import OFF, console, env_prefix, fail
from visionserve.cli.running_servers import (
    BACKGROUND, STARTED_BY_VARIABLE, RunningServer, running_servers, server_on_port,
)  # fmt: skip
from visionserve.cli.serve import HostOption, ModelOption, PortOption, WorkersOption, serve
from visionserve.config import Settings
from visionserve.server_process import ServerProcess

app = typer.Typer(
    help="Run the server in the background and manage it.", no_args_is_help=True, context_settings=env_prefix("server")
)

DOCKER_IMAGE = "visionserve:latest"


@app.command()
def start(
    *,
    host: HostOption,
    port: PortOption,
    model: ModelOption,
    workers: WorkersOption,
    foreground: Annotated[bool, typer.Option("--foreground", help="Run in this terminal instead.", default_factory=OFF)],
    docker: Annotated[
        bool, typer.Option("--docker", help=f"Run the {DOCKER_IMAGE} image with Docker.", default_factory=OFF)
    ],
    wait: Annotated[float, typer.Option(help="Seconds to wait for /readiness.")] = 300.0,
) -> None:
    """Start the server in the background and wait until it is ready."""
    if foreground:
        os.environ[STARTED_BY_VARIABLE] = "server start --foreground"
        serve(host=host, port=port, workers=workers, log_level=None, model=model)
        return
    settings = Settings(**{k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    if docker:
        _start_docker(settings, model or [])
        return
    settings.home.mkdir(parents=True, exist_ok=True)
    running = server_on_port(settings.home, settings.port)
    if running is not None:
        console.print(f"already running at [bold]{running.url}[/bold] (pid {running.pid}, started by {running.started_by})")
        return
    args = (*(("--workers", str(workers)) if workers else ()), *(part for m in model or [] for part in ("--model", m)))
    log_path = settings.home / "server.log"
    process = ServerProcess(
        log_path, settings.port, settings.host, env={STARTED_BY_VARIABLE: BACKGROUND}, args=args, detach=True
    )
    try:
        process.start(timeout_s=wait)
    except RuntimeError as error:
        raise fail(f"the server did not start:\n{str(error)[-2000:]}") from None
    assert process.process is not None
    console.print(f"visionserve is ready at [bold]{process.url}[/bold] (pid {process.process.pid}, log {log_path})")


@app.command()
def stop(
    wait: Annotated[float, typer.Option(help="Seconds to let in-flight requests finish before killing.")] = 60.0,
) -> None:
    """Stop the background servers gracefully: each stops accepting, finishes what is in flight, then exits."""
    home = Settings().home
    servers = running_servers(home)
    background = [server for server in servers if server.background]
    if not background:
        others = "; ".join(map(str, servers))
        console.print("no server is running" if not others else f"no background server is running; {others} "
                      "runs in a terminal: stop it there (Ctrl+C)", highlight=False)  # fmt: skip
        return
    for server in background:
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(server.alive() for server in background):
        time.sleep(0.1)
    for server in background:
        if server.alive():
            os.kill(server.pid, signal.SIGKILL)
            console.print(f"the server at {server.url} did not stop within {wait:g} s and was killed")
        console.print(f"stopped the server at {server.url} (pid {server.pid})")
    running_servers(home)  # drops the entries of killed servers


@app.command()
def status(api_key: ApiKeyOption) -> None:
    """Every running server of this $VISIONSERVE_HOME, however started, and what each has loaded. Exits 1 when
    none runs."""
    servers = running_servers(Settings().home)
    if not servers:
        console.print("no server is running")
        raise typer.Exit(code=1)
    table = Table("pid", "url", "started by", "workers", "ready", "models loaded", show_header=True)
    for server in servers:
        table.add_row(str(server.pid), server.url, server.started_by, str(server.workers), *_readiness(server, api_key))
    console.print(table)


def _readiness(server: RunningServer, api_key: str | None) -> tuple[str, str]:
    """Its /readiness status and loaded models (one worker's, with --workers)."""
    if not server.listening():
        return "starting or stopping", ""
    try:
        ready = httpx.get(f"{server.url}/readiness", timeout=5).json().get("status", "?")
        registry = httpx.get(f"{server.url}/model/registry", headers=bearer(api_key), timeout=5)
        if registry.status_code in (401, 403):
            return ready, "? (needs an API key: --api-key)"
        loaded = [m["model_id"] for m in registry.json()["models"]]
    except (httpx.HTTPError, ValueError, KeyError):
        return "not answering", ""
    return ready, ", ".join(loaded) or "none"


@app.command()
def logs(
    *,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many of the last lines.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.", default_factory=OFF)],
) -> None:
    """Print the background server's log."""
    path = Settings().home / "server.log"
    if not path.exists():
        raise fail(f"no log at {path}: the server was never started in the background")
    with path.open(errors="replace") as log:
        for line in deque(log, maxlen=lines):
            console.out(line, end="", highlight=False)
        while follow:
            line = log.readline()
            if line:
                console.out(line, end="", highlight=False)
            else:
                time.sleep(0.2)


def _start_docker(settings: Settings, models: list[str]) -> None:
    docker = shutil.which("docker")
    if docker is None:
        raise fail("Docker is not installed; run `visionserve server start` without --docker")
    if subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        raise fail("no Docker engine is running (`docker info` failed); start one, or run without --docker")
    if subprocess.run([docker, "image", "inspect", DOCKER_IMAGE], capture_output=True).returncode != 0:
        raise fail(f"the image {DOCKER_IMAGE} is not built yet: run `docker build -t {DOCKER_IMAGE} .` in the repository")
    settings.home.mkdir(parents=True, exist_ok=True)
    command = [
        docker, "run", "--detach", "--name", "visionserve",
        "--publish", f"{settings.host}:{settings.port}:9001",
        "--volume", f"{settings.home}:/data",
        DOCKER_IMAGE, *(part for model_id in models for part in ("--model", model_id)),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise fail(f"docker run failed: {completed.stderr.strip()}")
    console.print(f"visionserve runs in container {completed.stdout.strip()[:12]} at http://{settings.host}:{settings.port}")
