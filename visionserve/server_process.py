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
        """Where to reach it from this machine (a wildcard bind answers on loopback)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        """Start the server and return once `/readiness` answers 200; raise with the log if it does not."""
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
                if httpx.get(f"{self.url}/readiness", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
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
