"""How many threads do what, chosen from the cores this process may use, so that busy threads never outnumber
cores (the README's thread table shows the result on 2, 8 and 64 cores).

Measured on 2 cores with a YOLOv8n (`make bench`): two single-thread forward passes side by side give 1.3x the
throughput of one pass over both cores, and cost each pass no more CPU than running alone; but one pass over both
cores answers a lone request in ~60% of the time of a single-thread pass. So under load every core runs its own
pass, and a request that is alone gets a pass over all cores.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2

# Side-by-side passes stop here: past ~16 requests in progress a queue is long anyway, and every concurrent pass
# holds its own activation buffers. Bigger machines give each pass more threads instead.
MAX_CONCURRENT_RUNS = 16
# A lone pass of the small detectors served here gains little past 16 threads (judgement, not measured here:
# this project's machines have 2 cores); more threads would only spin.
MAX_LONE_THREADS = 16


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The container's CPU quota in cores (cgroup v2 `cpu.max`, or v1 `cfs_quota_us`), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (benchmarks print it; OpenVINO choices are keyed by it)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown-cpu"


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a container's CPU quota rounded down (at least 1),
    as Go's automaxprocs does: a thread per rounded-up core would be throttled under load."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(cores, math.floor(limit))) if limit else cores


@dataclass(frozen=True)
class ThreadPlan:
    """What one server process does with its cores."""

    cores: int  # cores this process plans for (the machine's share of one worker process)
    run_threads: int  # ONNX Runtime intra-op threads of one forward pass under load
    concurrent_runs: int  # forward passes side by side under load
    lone_threads: int  # threads of a lone request's forward pass (== run_threads: no separate session)
    worker_threads: int  # threads that take inference jobs (decode, forward, answer) and parse bodies


def plan_threads(
    cores: int,
    run_threads: int = 0,
    concurrent_runs: int = 0,
    lone_threads: int = 0,
    worker_threads: int = 0,
    processes: int = 1,
) -> ThreadPlan:
    """Fill in every value left at 0 from `cores` shared by `processes` worker processes:

    - under load, one single-thread pass per core (up to 16 side by side; beyond, each pass gets cores/16 threads);
    - a lone request, one pass over every core (at most 16 threads);
    - twice as many worker threads as passes (at least 4), so while every pass is busy the next requests are
      already being read and decoded, and a slow image download does not leave a core idle; how many of them
      run a forward pass at once is capped by the passes, so they never add busy threads beyond the cores.
    """
    share = max(1, cores // max(1, processes))
    if run_threads <= 0 and concurrent_runs > 0:
        run_threads = max(1, share // concurrent_runs)
    elif run_threads <= 0:
        run_threads = math.ceil(share / MAX_CONCURRENT_RUNS)
    if concurrent_runs <= 0:
        concurrent_runs = max(1, share // run_threads)
    if lone_threads <= 0:
        lone_threads = min(share, MAX_LONE_THREADS)
    lone_threads = max(lone_threads, run_threads)
    if worker_threads <= 0:
        worker_threads = max(4, 2 * concurrent_runs)
    return ThreadPlan(share, run_threads, concurrent_runs, lone_threads, worker_threads)


def keep_opencv_to_its_caller() -> None:
    """OpenCV resizes on a pool of its own, one thread per core, on top of the worker threads that already decode
    and resize side by side: busy threads beyond the cores. One thread each costs a lone 960x540 resize 0.3 ms
    and saves 0.6 ms of CPU (1.5 ms on two threads vs 0.9 ms on one, measured on 2 cores)."""
    cv2.setNumThreads(1)
