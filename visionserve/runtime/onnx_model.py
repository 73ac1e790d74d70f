"""ONNX Runtime sessions: provider choice, threading, and a thread-safe `run`."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from visionserve.runtime.cores import CoreBudget
from visionserve.runtime.engines import SessionBuilds, built_once, tensorrt_options
from visionserve.runtime.providers import CPU, OPENVINO, TENSORRT

ProviderSpec = str | tuple[str, dict[str, str]]
# Providers running on the CPU's cores: a lone request may widen its pass over all of them (a second session).
ON_THE_CPU = (CPU, OPENVINO)

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

@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions use the machine (`visionserve.runtime.threads` explains the defaults)."""

    providers: tuple[str, ...] = (CPU,)  # as `visionserve.runtime.providers.choose` made them: all in the build
    intra_op_threads: int = 0  # threads per pass under load; 0: ONNX Runtime's default (one per physical core)
    concurrent_runs: int = 1  # passes side by side, shared by every model of the process through `cores`
    spinning: bool = True  # idle intra-op threads spin during a pass (faster hand-offs between operators)
    lone_threads: int = 0  # threads of a lone request's pass; more than intra_op_threads: a second CPU session
    cores: CoreBudget | None = None  # the process's budget of passes; None: this model's own
    engine_root: Path | None = None  # TensorRT engines of models outside the store (built-in ones) go here
    tensorrt_fp16: bool = True
    builds: SessionBuilds | None = None  # sessions being created, for the registry and for 503s meanwhile
    openvino_per_model: bool = False  # CPU or OpenVINO, whichever measures faster (`runtime.openvino_choice`)


def _static_dim(dim: object) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


class OnnxModel:
    """A model's inference session, thread-safe. On CPU it may hold a second session over more threads for
    requests that are alone (`CoreBudget` decides per pass)."""

    def __init__(self, path: Path, options: RuntimeOptions, label: str | None = None) -> None:
        providers = list(options.providers)
        builds = options.builds or SessionBuilds()
        specs = _provider_specs(path, options)
        engine = next((Path(spec[1]["trt_engine_cache_path"]) for spec in specs if spec[0] == TENSORRT
                       and isinstance(spec, tuple)), None)  # fmt: skip
        with builds.building(label or path.name, providers[0], engine=engine is not None):
            with built_once(engine) if engine is not None else contextlib.nullcontext():
                self.session = open_session(path, specs, options.intra_op_threads, options.spinning)
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError("expected one image input shaped [batch, channels, height, width]")
        self.input_name: str = inputs[0].name
        self.input_shape: list[object] = list(inputs[0].shape)
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.output_names: list[str] = [output.name for output in self.session.get_outputs()]
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.cores = options.cores or CoreBudget(options.concurrent_runs)
        self.lone_session = None  # accelerators run one pass at a time anyway: no second session for them
        if providers[0] in ON_THE_CPU and options.lone_threads > max(1, options.intra_op_threads):
            lone_specs = _provider_specs(path, replace(options, intra_op_threads=options.lone_threads))
            self.lone_session = open_session(path, lone_specs, options.lone_threads, options.spinning, lone=True)

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
    def concurrent_runs(self) -> int:
        """Passes that may run side by side: the slots of the budget this model shares."""
        return self.cores.slots

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    @property
    def provider(self) -> str:
        """The provider the session actually runs on (onnxruntime may have dropped one that did not load)."""
        return self.providers[0]

    @property
    def lone_provider(self) -> str | None:
        """The provider of the lone request's session, if the model has one."""
        return None if self.lone_session is None else self.lone_session.get_providers()[0]

    def run(self, batch: np.ndarray, may_widen: bool = False) -> list[np.ndarray]:
        """Outputs for one batch; `may_widen`: the pass may use every core if its request is alone (a batch split
        over several passes runs them side by side instead)."""
        with self.cores.forward(may_widen and self.lone_session is not None) as wide:
            return self.run_holding(batch, wide)

    def run_holding(self, batch: np.ndarray, wide: bool) -> list[np.ndarray]:
        """`run` for a caller already holding the cores (`wide`: all of them, as `CoreBudget.forward` said)."""
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        session = self.lone_session if wide and self.lone_session is not None else self.session
        outputs = session.run(None, {self.input_name: batch})
        return [np.asarray(output, dtype=np.float32) for output in outputs]


def _provider_specs(path: Path, options: RuntimeOptions) -> list[ProviderSpec]:
    """Providers with the options they need: TensorRT's engine cache and FP16, OpenVINO's thread count."""
    specs: list[ProviderSpec] = []
    for provider in options.providers:
        if provider == TENSORRT:
            specs.append((provider, tensorrt_options(path, options.engine_root, options.tensorrt_fp16)))
        elif provider == OPENVINO:
            specs.append((provider, openvino_options(options.intra_op_threads)))
        else:
            specs.append(provider)
    return specs


def openvino_options(threads: int) -> dict[str, str]:
    """OpenVINO on the CPU, in FP32 (the CPU provider's answers), with the pass's share of the cores."""
    options = {"device_type": "CPU", "precision": "FP32"}
    if threads > 0:
        options["num_of_threads"] = str(threads)
    return options


def open_session(
    path: Path, providers: list[ProviderSpec], threads: int, spinning: bool, lone: bool = False
) -> ort.InferenceSession:
    """A session as the server runs it: sequential, `threads` intra-op threads, never onnxruntime's silent retry
    on the CPU when a provider fails (the caller chose the providers knowing they load)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if lone:  # its threads spin between operators, never after the pass, when the cores are the others' again
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), sess_options=options, providers=providers, enable_fallback=0)
