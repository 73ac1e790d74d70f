"""Running `visionserve serve` as a child process and waiting until it is ready (tests, benchmarks, CLI)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_taken(host: str, port: int) -> bool:
    """Something already listens on host:port (binding fails as the server's own bind would)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_in_use_message(host: str, port: int) -> str:
    return (
        f"{host}:{port} is already in use: another process listens there. Stop it, or choose another port (--port "
        "or VISIONSERVE_PORT)."
    )


def reachable_url(host: str, port: int) -> str:
    """Where a server bound to host:port is reached from this machine (a wildcard bind answers on loopback)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process `pid` holds a listening TCP socket on `port`; None where /proc cannot tell (not Linux)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:  # sl local_address rem_address st ... inode: port in hex, state 0A = LISTEN
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return None
    return any(_link(descriptor) in inodes for descriptor in descriptors)


def _link(path: Path) -> str:
    try:
        return str(path.readlink())
    except OSError:  # closed meanwhile
        return ""


class ServerProcess:
    def __init__(
        self,
        log_path: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        detach: bool = False,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.args = args
        self.detach = detach  # a session of its own: it outlives the command that started it
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return reachable_url(self.host, self.port)

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        """Start the server and return once it answers 200 on `/readiness`; raise with the log if it does not.

        The answer must come from this process: another server already on the port is an error, not a start."""
        if port_taken(self.host, self.port):
            raise RuntimeError(port_in_use_message(self.host, self.port))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "visionserve", "serve", "--host", self.host, "--port", str(self.port), *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.detach,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with code {self.process.returncode}:\n{self.log()}")
            try:
                answered = httpx.get(f"{self.url}/readiness", timeout=1).status_code == 200
            except httpx.HTTPError:
                answered = False
            if answered and listens_on(self.process.pid, self.port) is not False:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout_s:g} s:\n{self.log()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
