"""`visionserve ray serve` on a local Ray cluster of its own, as a child process (tests, benchmarks): started on a
free loopback port with its own Ray temp dir, ready once it serves, stopped with the cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from visionserve.deploy.ray_serve import ModelLoad, model_loads
from visionserve.server_process import free_port

READY_LINE = "visionserve on Ray"  # what the command prints once the application serves


class RayServeProcess:
    def __init__(self, ray_temp: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.ray_temp = ray_temp  # RAY_TMPDIR: the session's sockets and logs stay apart from other clusters
        self.port = free_port()
        self.args = args
        self.env = {**os.environ, "RAY_TMPDIR": str(ray_temp), "RAY_USAGE_STATS_ENABLED": "0", **env}
        self.log_path = ray_temp / "cli.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def session(self) -> Path:
        return self.ray_temp / "ray" / "session_latest"

    def start(self, timeout_s: float = 180.0) -> RayServeProcess:
        self.ray_temp.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "visionserve", "ray", "serve", "--port", str(self.port), *self.args]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout_s
        while READY_LINE not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"visionserve ray serve did not come up:\n{self.log()}")
            time.sleep(0.5)
        httpx.get(f"{self.url}/readiness", timeout=30).raise_for_status()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM: the command removes the application and stops its cluster."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def loads(self) -> list[ModelLoad]:
        return model_loads(self.session)

    def worker_logs(self) -> set[Path]:
        """One per model-worker replica ever started."""
        return set((self.session / "logs" / "serve").glob("replica_*_ModelWorker_*.log"))
