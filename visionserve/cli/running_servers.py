"""The running servers of a $VISIONSERVE_HOME, one notion for every command.

Every `visionserve serve` process, however it was started (`server start`, `make serve`, `visionserve serve`, any
`--workers`), writes `servers/<pid>.json` as it starts and removes it as it stops. Readers drop an entry whose
process is gone (kill -9, a crash), is another process under a reused pid (its start time differs), or no longer
holds its port while another process does. A live server not holding its port is kept: it is starting (the port
is checked free before it loads the app) or stopping.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from visionserve.cli.common import errors
from visionserve.config import Settings
from visionserve.server_process import listens_on, port_in_use_message, port_taken, reachable_url

# How a server was started, for `server status`: `server start` and the Makefile's `serve` target set it.
STARTED_BY_VARIABLE = "VISIONSERVE_STARTED_BY"
BACKGROUND = "server start"


@dataclass(frozen=True)
class RunningServer:
    pid: int
    url: str
    host: str
    port: int
    started_by: str
    workers: int
    started_at: float
    hostname: str  # a container sharing the home writes its own pids: never judged from outside
    process_start: str | None  # the kernel's start time of `pid`, where /proc tells it

    def __str__(self) -> str:
        return f"{self.url} (pid {self.pid}, started by {self.started_by})"

    @property
    def background(self) -> bool:
        return self.started_by == BACKGROUND

    def alive(self) -> bool:
        """The registered process still runs (not a zombie, not another process that got its pid)."""
        if self.process_start is None:
            return _pid_exists(self.pid)
        return kernel_start_time(self.pid) == self.process_start

    def listening(self) -> bool:
        """It holds its port (False while it starts, or stops after SIGTERM); True where /proc cannot tell."""
        return listens_on(self.pid, self.port) is not False

    def serving(self) -> bool:
        """Still this server: its process runs, and its port is its own or no one's."""
        return self.alive() and (self.listening() or not port_taken(self.host, self.port))


def _registry(home: Path) -> Path:
    return home / "servers"


@contextmanager
def registered(settings: Settings) -> Iterator[None]:
    """This process, listed as a running server of `settings.home` for as long as the block runs."""
    pid = os.getpid()
    entry = RunningServer(
        pid=pid, url=reachable_url(settings.host, settings.port), host=settings.host, port=settings.port,
        started_by=os.environ.get(STARTED_BY_VARIABLE, "visionserve serve"), workers=settings.workers,
        started_at=time.time(), hostname=socket.gethostname(), process_start=kernel_start_time(pid),
    )  # fmt: skip
    path = _registry(settings.home) / f"{pid}.json"
    partial = path.with_suffix(".partial")  # readers never see half an entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(asdict(entry), indent=2) + "\n")
        partial.replace(path)
    except OSError as error:  # a read-only home still serves
        errors.print(f"warning: not listed in {path.parent} ({error}): `server status` will not see this server",
                     markup=False, highlight=False)  # fmt: skip
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def running_servers(home: Path) -> list[RunningServer]:
    """The servers registered in `home` that still run, oldest first; entries of gone processes are deleted."""
    found = []
    for path in _registry(home).glob("*.json"):
        try:
            entry = RunningServer(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)  # not an entry this version wrote
            continue
        if entry.hostname != socket.gethostname():
            continue
        if entry.serving():
            found.append(entry)
        else:
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda entry: entry.started_at)


def server_on_port(home: Path, port: int) -> RunningServer | None:
    return next((entry for entry in running_servers(home) if entry.port == port), None)


def port_refusal(settings: Settings) -> str | None:
    """Why a server cannot start on the configured port (a visionserve server or another program holds it), or
    None when the port is free."""
    if not port_taken(settings.host, settings.port):
        return None
    holder = server_on_port(settings.home, settings.port)
    if holder is None:
        return port_in_use_message(settings.host, settings.port)
    return f"visionserve already runs at {holder}. Stop it, or choose another port (--port or VISIONSERVE_PORT)."


def kernel_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); None when the process is gone, a
    zombie, or there is no /proc."""
    try:
        state, *fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None
    return None if state in ("Z", "X") else fields[18]


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's: it exists
    return True
