"""`make bench-ray`: the Ray Serve deployment against the single-process server, side by side in one run on the
same cores, model (nudenet/1, YOLOv8n at 320) and photo (640x480 JPEG):

1. Throughput: 2 model-worker replicas of one ONNX thread each vs one server process running two forward passes of
   one thread each (the same thread budget); ratio (goal >= 0.80), and what Ray adds per request: p50 at one client
   and CPU milliseconds per request, measured per process from /proc (Ray's proxy, the ingress, the workers). What
   each process burns while no request comes (Ray's controller, raylet and GCS keep working) is measured on its own
   first and reported as background CPU, not charged to the requests.
2. Model capacity: 2 replicas x 4 models, 8 distinct models round-robin: loads during warm-up, then none after.

    python -m benchmarks.ray_bench [--seconds 10] [--concurrency 8]

Load comes from wrk (a C load generator) when installed, else visionserve.loadtest.http_load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from benchmarks.detect import request_body, test_photo
from benchmarks.target import Target
from visionserve.deploy.ray_process import RayServeProcess
from visionserve.loadtest import drive
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore
from visionserve.runtime.threads import cpu_model
from visionserve.server_process import ServerProcess

console = Console(width=120)
FIXTURE_MODELS = Path(__file__).parent.parent / "tests" / "fixtures" / "models"
PATH = "/infer/object_detection"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ONE_THREAD = {  # every pass on one thread, a lone request's too: the same passes as Ray's one-CPU workers
    "VISIONSERVE_INTRA_OP_THREADS": "1",
    "VISIONSERVE_LONE_REQUEST_THREADS": "1",
    "VISIONSERVE_LOG_LEVEL": "warning",
    "VISIONSERVE_WEIGHTS_API": "",
}
# Eight distinct detectors: the built-in one, the fixture detector exports, and one of them again under a second id.
CAPACITY_MODELS = {f"{path.stem}/1": path for path in sorted(FIXTURE_MODELS.glob("shapes-detect*.onnx"))}
CAPACITY_MODELS["shapes-detect-copy/1"] = FIXTURE_MODELS / "shapes-detect.onnx"


def load_run(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[float, int]:
    """Requests per second and how many were served (a non-200 answer fails the run)."""
    result = drive(url, PATH, body, concurrency, seconds, warmup_s=0)
    assert result.errors == 0, f"{result.errors} failed requests"
    return result.per_second, result.requests


ROLES = {
    "ProxyActor": "Ray HTTP proxy",  # under HAProxy: the head node's fallback, idle
    "bin/haproxy": "HAProxy",
    "visionserve:Ingress": "ingress",
    "visionserve:ModelWorker": "model workers",
}


def process_tree(root_pid: int) -> dict[int, tuple[float, str]]:
    """`root_pid` and every live process under it: pid -> (CPU seconds so far, command line), read from /proc."""
    stats: dict[int, tuple[int, float, str]] = {}  # pid -> parent, CPU seconds, command line
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        stats[int(stat.parent.name)] = (
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
            command,
        )
    tree = {}
    for pid, (_, seconds, command) in stats.items():
        ancestor = pid
        while ancestor not in (root_pid, 0, 1) and ancestor in stats:
            ancestor = stats[ancestor][0]
        if ancestor == root_pid:
            tree[pid] = (seconds, command)
    return tree


def cpu_seconds_by_role(root_pid: int) -> dict[str, float]:
    """CPU time so far of `root_pid` and every process under it, by role (Ray's proxy, the ingress, the model
    workers; the rest of Ray, or the single server itself, as "other")."""
    by_role: dict[str, float] = {}
    for seconds, command in process_tree(root_pid).values():
        role = next((name for marker, name in ROLES.items() if marker in command), "other")
        by_role[role] = by_role.get(role, 0.0) + seconds
    return by_role


def idle_cpu_rates(root_pid: int, seconds: float) -> dict[str, float]:
    """CPU seconds per second by role while no request comes."""
    before = cpu_seconds_by_role(root_pid)
    time.sleep(seconds)
    return {role: (spent - before.get(role, 0.0)) / seconds for role, spent in cpu_seconds_by_role(root_pid).items()}


def p50_ms(url: str, body: bytes, seconds: float) -> float:
    return drive(url, PATH, body, 1, seconds).p50_ms


def capacity_round_robin(url: str, models: list[str], jpeg: bytes, rounds: int) -> None:
    with httpx.Client(base_url=url, timeout=120) as http:
        for _ in range(rounds):
            for model_id in models:
                response = http.post(
                    PATH, content=request_body(model_id, [jpeg]), headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()


@dataclass(frozen=True)
class RayRun:
    """Both deployments' figures from one side-by-side run."""

    rates: dict[str, list[float]]  # requests/s per turn, "one process" and "Ray Serve"
    p50_ms: dict[str, float]
    cpu_ms: dict[str, dict[str, float]]  # per request, by role, less what the role burns while idle
    idle_ms_per_s: dict[str, dict[str, float]]  # CPU ms per second by role while no request comes
    warmup_loads: int
    steady_loads: int
    loads_per_replica: list[int]

    def extra_cpu_ms(self) -> float:
        return sum(self.cpu_ms[RAY].values()) - sum(self.cpu_ms[SINGLE].values())


SINGLE, RAY = "one process", "Ray Serve"


def measure(seconds: float, concurrency: int, rounds: int) -> RayRun:
    jpeg = test_photo(640, 480)
    body = request_body("nudenet/1", [jpeg])
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        store = ModelStore(home / "models")
        for model_id, path in CAPACITY_MODELS.items():
            import_model(store, path, model_id, ManifestOverrides())
        env = {**ONE_THREAD, "VISIONSERVE_HOME": str(home)}
        single = ServerProcess(
            Path(folder) / "single.log", env={**env, "VISIONSERVE_CONCURRENT_RUNS": "2"}
        ).start()
        ray_args = ("--replicas", "2", "--models-per-replica", "4", "--cpus-per-replica", "1", "--num-cpus", str(cores))
        on_ray = RayServeProcess(Path(folder) / "ray", ray_args, env).start()
        try:  # both stay up (idle, they cost nothing) and take turns, so drifting noise hits both alike
            # Capacity first, on empty replicas: the throughput runs below spread nudenet/1 over both replicas.
            models = ["nudenet/1", *CAPACITY_MODELS]
            capacity_round_robin(on_ray.url, models, jpeg, rounds=2)
            warmup_loads = len(on_ray.loads())
            capacity_round_robin(on_ray.url, models, jpeg, rounds=10)
            steady_loads = len(on_ray.loads()) - warmup_loads
            per_replica = {load.replica: load.loads_so_far for load in on_ray.loads()}
            servers = {SINGLE: single, RAY: on_ray}
            rates: dict[str, list[float]] = {name: [] for name in servers}
            cpu_ms: dict[str, dict[str, float]] = {name: {} for name in servers}  # per request, by role, all runs
            for server in servers.values():
                load_run(server.url, body, concurrency, 2)  # warm-up: every replica has loaded the model
            idle = {  # after the warm-up, so no model load or first-request work counts as idle
                name: idle_cpu_rates(server.process.pid, seconds)  # type: ignore[union-attr]
                for name, server in servers.items()
            }
            for _ in range(rounds):
                for name, server in servers.items():
                    before = cpu_seconds_by_role(server.process.pid)  # type: ignore[union-attr]
                    started = time.monotonic()
                    rate, served = load_run(server.url, body, concurrency, seconds)
                    elapsed = time.monotonic() - started
                    after = cpu_seconds_by_role(server.process.pid)  # type: ignore[union-attr]
                    rates[name].append(rate)
                    for role, spent in after.items():
                        busy = spent - before.get(role, 0.0) - idle[name].get(role, 0.0) * elapsed
                        cpu_ms[name][role] = cpu_ms[name].get(role, 0.0) + 1000 * busy / served / rounds
            p50 = {name: p50_ms(server.url, body, seconds / 2) for name, server in servers.items()}
        finally:
            single.stop()
            on_ray.stop()
    idle_ms = {name: {role: 1000 * rate for role, rate in by_role.items()} for name, by_role in idle.items()}
    return RayRun(rates, p50, cpu_ms, idle_ms, warmup_loads, steady_loads, sorted(per_replica.values()))


def ray_targets(seconds: float, concurrency: int = 8, rounds: int = 2) -> list[Target]:
    """Issue 24's goals for Ray against one process: throughput >= 0.80, extra CPU and extra p50 <= 3 ms each."""
    run = measure(seconds, concurrency, rounds)
    single, ray = max(run.rates[SINGLE]), max(run.rates[RAY])
    extra_cpu, extra_p50 = run.extra_cpu_ms(), run.p50_ms[RAY] - run.p50_ms[SINGLE]
    roles = ", ".join(f"{role} {ms:.1f}" for role, ms in sorted(run.cpu_ms[RAY].items()))
    background = sum(run.idle_ms_per_s[RAY].values()) - sum(run.idle_ms_per_s[SINGLE].values())
    roles += f"; idle background +{background:.0f} CPU ms/s, not counted"
    return [
        Target(f"Ray Serve / one process, {concurrency} clients", f"{ray:.1f} / {single:.1f} req/s", ray / single,
               ">= 0.80", ray / single >= 0.80),
        Target("Ray Serve: extra CPU per request", f"+{extra_cpu:.1f} ms (Ray's: {roles})", extra_cpu, "<= 3 ms",
               extra_cpu <= 3),
        Target("Ray Serve: extra p50 at 1 client", f"{run.p50_ms[RAY]:.1f} vs {run.p50_ms[SINGLE]:.1f} ms",
               extra_p50, "<= 3 ms", extra_p50 <= 3),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=2, help="turns each deployment takes; the best one counts"
    )
    args = parser.parse_args()
    console.print(f"{os.cpu_count()} cores ({cpu_model()}), shared with other work: figures are noisy")
    run = measure(args.seconds, args.concurrency, args.rounds)
    console.print(f"requests/s per turn: one process {run.rates[SINGLE]}, Ray {run.rates[RAY]}")
    table = Table(title="Ray Serve vs one process, nudenet/1 (320), 640x480 JPEG, 2 x 1 ONNX thread")
    for column in ("measure", SINGLE, RAY, "Ray / one process"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    single_rps, ray_rps = max(run.rates[SINGLE]), max(run.rates[RAY])
    table.add_row(f"requests/s at {args.concurrency} clients", f"{single_rps:.1f}", f"{ray_rps:.1f}",
                  f"{ray_rps / single_rps:.2f} (goal >= 0.80)")  # fmt: skip
    single_p50, ray_p50 = run.p50_ms[SINGLE], run.p50_ms[RAY]
    table.add_row("p50 at 1 client, ms", f"{single_p50:.1f}", f"{ray_p50:.1f}", f"+{ray_p50 - single_p50:.1f} ms")
    single_cpu_ms, ray_cpu_ms = (sum(run.cpu_ms[name].values()) for name in (SINGLE, RAY))
    table.add_row("CPU ms per request (all processes, less idle)", f"{single_cpu_ms:.1f}", f"{ray_cpu_ms:.1f}",
                  f"+{run.extra_cpu_ms():.1f} ms")  # fmt: skip
    single_idle, ray_idle = (sum(run.idle_ms_per_s[name].values()) for name in (SINGLE, RAY))
    table.add_row("CPU ms per second while idle", f"{single_idle:.0f}", f"{ray_idle:.0f}",
                  f"+{ray_idle - single_idle:.0f} ms/s")  # fmt: skip
    console.print(table)
    for name in (SINGLE, RAY):
        roles = ", ".join(f"{role} {ms:.1f}" for role, ms in sorted(run.cpu_ms[name].items()))
        console.print(f"CPU ms per request, {name}: {roles}")
        idle = ", ".join(f"{role} {ms:.0f}" for role, ms in sorted(run.idle_ms_per_s[name].items()))
        console.print(f"CPU ms per second while idle, {name}: {idle}")
    console.print(
        f"Model capacity, 2 replicas x 4 models, 8 models round-robin: {run.warmup_loads} loads in the 2 warm-up "
        f"rounds, {run.steady_loads} in the next 10 rounds (80 requests); loads per replica: {run.loads_per_replica}"
    )


if __name__ == "__main__":
    main()
