"""ONNX Runtime sessions: provider choice, threading, and a thread-safe `run`."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

logger = logging.getLogger(__name__)

# onnxruntime's own exceptions derive from Exception directly, not from RuntimeError.
RUNTIME_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    RuntimeError,
    *(
        error
        for error in vars(_ort_state).values()
        if isinstance(error, type) and issubclass(error, Exception)
    ),
)

CPU_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions use the machine. On CPU, several single- or few-threaded runs side by side beat one run
    spread over every core (measured: 2 runs x 1 thread = 1.3x the throughput of 1 run x 2 threads on 2 cores),
    while one run over all cores has the lowest latency for a lone request."""

    providers: tuple[str, ...] = (CPU_PROVIDER,)
    intra_op_threads: int = 0  # threads per run; 0: ONNX Runtime's default (one per physical core)
    concurrent_runs: int = 1  # runs of one session at the same time
    spinning: bool = True  # idle intra-op threads spin briefly (faster hand-offs, but CPU taken from others)


def available_cores() -> int:
    """Cores this process may use (CPU affinity and container limits included where the OS reports them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def plan_threads(intra_op_threads: int, concurrent_runs: int, cores: int) -> tuple[int, int]:
    """Fill in what was left at 0: by default two runs side by side, each on half of the cores."""
    if intra_op_threads <= 0 and concurrent_runs <= 0:
        intra_op_threads = max(1, cores // 2)
    if intra_op_threads <= 0:
        intra_op_threads = max(1, cores // concurrent_runs)
    if concurrent_runs <= 0:
        concurrent_runs = max(1, cores // intra_op_threads)
    return intra_op_threads, concurrent_runs


def usable_providers(requested: tuple[str, ...]) -> list[str]:
    """The requested providers this onnxruntime build has, in order, always ending with the CPU."""
    available = set(ort.get_available_providers())
    chosen = [name for name in requested if name in available]
    missing = [name for name in requested if name not in available]
    if missing:
        logger.warning("execution providers not available in this onnxruntime build: %s", ", ".join(missing))
    if CPU_PROVIDER not in chosen:
        chosen.append(CPU_PROVIDER)
    return chosen


def _static_dim(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxModel:
    """One inference session, run by at most `concurrent_runs` callers at once, so requests share the cores
    instead of fighting over them."""

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = 1
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
        self.session = ort.InferenceSession(
            str(path), sess_options=session_options, providers=usable_providers(options.providers)
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError("expected one image input shaped [batch, channels, height, width]")
        self.input_name: str = inputs[0].name
        self.input_shape: list[object] = list(inputs[0].shape)
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.output_names: list[str] = [output.name for output in self.session.get_outputs()]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.concurrent_runs = max(1, options.concurrent_runs)
        self._slots = threading.BoundedSemaphore(self.concurrent_runs)

    @property
    def batch_size(self) -> int | None:
        """The fixed batch size, or None when the batch axis is dynamic."""
        return _static_dim(self.input_shape[0])

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """The fixed (height, width), or None when either is dynamic."""
        height, width = _static_dim(self.input_shape[2]), _static_dim(self.input_shape[3])
        return (height, width) if height and width else None

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        with self._slots:
            outputs = self.session.run(None, {self.input_name: batch})
        return [np.asarray(output, dtype=np.float32) for output in outputs]
