"""ONNX Runtime sessions: provider choice, threading, and a thread-safe `run`."""

from __future__ import annotations

import logging
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
    providers: tuple[str, ...] = (CPU_PROVIDER,)
    intra_op_threads: int = 0  # 0: ONNX Runtime's default (one per physical core)


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
    """One inference session. `run` is serialised so concurrent requests do not fight over the cores;
    parallelism comes from the session's own intra-op threads."""

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(path), sess_options=session_options, providers=usable_providers(options.providers)
        )
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError("expected one image input shaped [batch, channels, height, width]")
        self.input_name: str = inputs[0].name
        self.input_shape: list[object] = list(inputs[0].shape)
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self._lock = threading.Lock()

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
        with self._lock:
            outputs = self.session.run(None, {self.input_name: batch})
        return [np.asarray(output, dtype=np.float32) for output in outputs]
