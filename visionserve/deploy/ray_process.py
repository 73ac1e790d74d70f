"""`visionserve ray serve` on a local Ray cluster of its own, as a child process (tests, benchmarks): started on a
free loopback port with its own Ray temp dir, ready once it serves, stopped with the cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from visionserve.deploy.ray_serve import ModelLoad, model_loads
from visionserve.server_process import ServerProcess

READY_LINE = "visionserve on Ray"  # what the command prints once the application serves


class RayServeProcess(ServerProcess):
    def __init__(self, ray_temp: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
        # RAY_TMPDIR: the session's sockets and logs stay apart from any other Ray cluster on the machine.
        ray_env = {"RAY_TMPDIR": str(ray_temp), "RAY_USAGE_STATS_ENABLED": "0", **env}
        super().__init__(log_path=ray_temp / "cli.log", env=ray_env, args=args)
        self.ray_temp = ray_temp

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
        try:
            httpx.get(f"{self.url}/readiness", timeout=30).raise_for_status()
        except httpx.HTTPError:
            self.stop()  # its cluster (and HAProxy) must not outlive a failed start
            raise
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM: the command removes the application and stops its cluster (which takes a while)."""
        super().stop(timeout_s)

    def loads(self) -> list[ModelLoad]:
        return model_loads(self.session)

    def worker_logs(self) -> set[Path]:
        """One per model-worker replica ever started."""
        return set((self.session / "logs" / "serve").glob("replica_*_ModelWorker_*.log"))
