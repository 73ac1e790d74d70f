"""`visionserve server start|stop|status|logs`: the server as a background process.

State lives under $VISIONSERVE_HOME: `server.json` (pid, URL, the server's id) and `server.log`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table

from visionserve.cli.common import console, fail
from visionserve.cli.serve import HostOption, ModelOption, PortOption, WorkersOption, serve
from visionserve.config import Settings
from visionserve.server_process import ServerProcess

app = typer.Typer(help="Run the server in the background and manage it.", no_args_is_help=True)

DOCKER_IMAGE = "visionserve:latest"


@dataclass(frozen=True)
class ServerRecord:
    pid: int
    url: str
    server_id: str
    log_path: str

    @staticmethod
    def path(home: Path) -> Path:
        return home / "server.json"

    @classmethod
    def load(cls, home: Path) -> ServerRecord | None:
        try:
            return cls(**json.loads(cls.path(home).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, home: Path) -> None:
        self.path(home).write_text(json.dumps(asdict(self), indent=2) + "\n")

    def alive(self) -> bool:
        """The recorded process exists and is still the server we started (same server id)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        try:
            return httpx.get(f"{self.url}/info", timeout=2).json().get("uuid") == self.server_id
        except (httpx.HTTPError, ValueError):
            return _runs_visionserve(self.pid)  # alive but not answering: ours and busy, unless the pid was reused


def running_server(home: Path) -> ServerRecord | None:
    record = ServerRecord.load(home)
    if record is not None and not record.alive():
        ServerRecord.path(home).unlink(missing_ok=True)
        return None
    return record


@app.command()
def start(
    host: HostOption = None,
    port: PortOption = None,
    model: ModelOption = None,
    workers: WorkersOption = 1,
    foreground: Annotated[bool, typer.Option("--foreground", help="Run in this terminal instead.")] = False,
    docker: Annotated[bool, typer.Option("--docker", help=f"Run the {DOCKER_IMAGE} image with Docker.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for /readiness.")] = 300.0,
) -> None:
    """Start the server in the background and wait until it is ready."""
    if foreground:
        serve(host=host, port=port, workers=workers, model=model)
        return
    settings = Settings(**{k: v for k, v in {"host": host, "port": port}.items() if v is not None})
    if docker:
        _start_docker(settings, model or [])
        return
    settings.home.mkdir(parents=True, exist_ok=True)
    record = running_server(settings.home)
    if record is not None:
        console.print(f"already running at [bold]{record.url}[/bold] (pid {record.pid})")
        return
    args = ("--workers", str(workers), *(part for model_id in model or [] for part in ("--model", model_id)))
    log_path = settings.home / "server.log"
    process = ServerProcess(log_path, settings.port, settings.host, args=args, detach=True)
    try:
        process.start(timeout_s=wait)
    except RuntimeError as error:
        raise fail(f"the server did not start:\n{str(error)[-2000:]}") from None
    assert process.process is not None
    server_id = httpx.get(f"{process.url}/info", timeout=5).json()["uuid"]
    ServerRecord(process.process.pid, process.url, server_id, str(log_path)).save(settings.home)
    console.print(f"visionserve is ready at [bold]{process.url}[/bold] (pid {process.process.pid}, log {log_path})")


@app.command()
def stop(
    wait: Annotated[float, typer.Option(help="Seconds to let in-flight requests finish before killing.")] = 60.0,
) -> None:
    """Stop the background server gracefully: it stops accepting, finishes what is in flight, then exits."""
    home = Settings().home
    record = running_server(home)
    if record is None:
        console.print("no server is running")
        return
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _exists(record.pid):
        time.sleep(0.1)
    if _exists(record.pid):
        os.kill(record.pid, signal.SIGKILL)
        console.print(f"the server did not stop within {wait:g} s and was killed")
    ServerRecord.path(home).unlink(missing_ok=True)
    console.print(f"stopped the server at {record.url} (pid {record.pid})")


@app.command()
def status() -> None:
    """Whether the background server runs, and what it has loaded. Exits 1 when it does not run."""
    record = running_server(Settings().home)
    if record is None:
        console.print("no server is running")
        raise typer.Exit(code=1)
    table = Table("pid", "url", "ready", "models loaded", show_header=True)
    try:
        ready = httpx.get(f"{record.url}/readiness", timeout=5).json().get("status", "?")
        loaded = [m["model_id"] for m in httpx.get(f"{record.url}/model/registry", timeout=5).json()["models"]]
    except (httpx.HTTPError, ValueError, KeyError):
        ready, loaded = "not answering", []
    table.add_row(str(record.pid), record.url, ready, ", ".join(loaded) or "none")
    console.print(table)


@app.command()
def logs(
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many of the last lines.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
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


def unload_from_running_server(model_id: str) -> str:
    """Ask the background server (from `server.json`) to drop a model it may hold in memory; says what happened,
    since a server started otherwise (or one that refuses) keeps serving the model until it restarts."""
    record = running_server(Settings().home)
    caveat = "a server started otherwise keeps serving it from memory until it restarts or gets POST /model/remove"
    if record is None:
        return f"no background server runs; {caveat}"
    try:
        response = httpx.post(f"{record.url}/model/remove", json={"model_id": model_id}, timeout=10)
    except httpx.HTTPError as error:
        return f"the background server at {record.url} did not answer ({error}); {caveat}"
    if response.status_code != 200:
        return f"the background server at {record.url} refused to unload it ({response.status_code}: {response.text}); {caveat}"
    return f"unloaded it from the background server at {record.url}"


def _runs_visionserve(pid: int) -> bool:
    try:
        return b"visionserve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid file


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child of ours that exited but was not reaped yet is gone for our purposes
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


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
