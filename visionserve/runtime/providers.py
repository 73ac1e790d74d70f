"""Which ONNX Runtime execution providers the server runs on: the `device` setting, checked against the installed
onnxruntime build and a probe session on this machine.

A provider can be in the build and still not load here (no GPU, a driver older than the CUDA the wheel needs, no
libcudnn...); onnxruntime then quietly runs the session on the CPU. So each provider a device needs is tried once
per process on a tiny model (assets/probe.onnx), with one forward pass, and the error text onnxruntime gave is kept
to be shown: `auto` falls back with a reason (a WARNING when a GPU provider is in the build but does not load), an
explicit device that does not load refuses to start.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")
DEVICE_PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),  # nodes TensorRT cannot take run on CUDA, not on the CPU
    "openvino": (OPENVINO, CPU),
}
# What `auto` tries, best first. TensorRT is never chosen by `auto`: its first load builds an engine (minutes) and
# FP16 moves the answers, so it is asked for by name. OpenVINO is not here: whether it beats the CPU provider
# depends on the model, so `auto` measures it per model (`visionserve.runtime.openvino_choice`).
AUTO_ORDER = ("cuda",)

PROBE_MODEL = Path(__file__).resolve().parent.parent / "assets" / "probe.onnx"
_probe_lock = threading.Lock()


class DeviceUnavailableError(RuntimeError):
    """An explicitly requested device cannot run here: the server refuses to start rather than run elsewhere."""


@dataclass(frozen=True)
class DeviceChoice:
    """The providers sessions are opened with, and why (one line for the start-up log)."""

    device: str
    providers: tuple[str, ...]
    reason: str
    openvino_per_model: bool = False  # auto with OpenVINO loading here: each model on whichever measured faster

    @property
    def provider(self) -> str:
        return self.providers[0]

    def __str__(self) -> str:
        where = ",".join(self.providers)
        if self.openvino_per_model:
            where = f"{OPENVINO} or {CPU}, whichever measures faster for each model"
        return f"device {self.device}: models run on {where} ({self.reason})"


@contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """onnxruntime's C++ logger writes to file descriptor 2, not through Python: catch what it says."""
    saved = os.dup(2)
    with path.open("wb") as capture:
        os.dup2(capture.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _error_lines(text: str) -> str:
    """onnxruntime's error lines, without their colours."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or line.startswith("[E:")]
    return " | ".join(errors or lines)[:2000]


@functools.cache
def probe(provider: str) -> str | None:
    """None when a session on `provider` opens and runs here; otherwise what onnxruntime said (once per process)."""
    if provider not in ort.get_available_providers():
        return f"{provider} is not in this onnxruntime build ({', '.join(ort.get_available_providers())})"
    if provider == CPU:
        return None
    with _probe_lock, tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "stderr"
        error = None
        try:
            with _stderr_to(log):
                session = ort.InferenceSession(str(PROBE_MODEL), providers=[provider, CPU], enable_fallback=0)
                session.run(None, {"image": np.zeros((1, 3, 16, 16), np.float32)})
                used = session.get_providers()
        except Exception as failure:  # onnxruntime's own exception types do not derive from RuntimeError
            error = f"{type(failure).__name__}: {failure}"
            used = []
        said = _error_lines(log.read_text(errors="replace"))
    if error is not None:
        return f"{error} {said}".strip()
    if used[:1] != [provider]:
        return f"the session fell back to {', '.join(used)}" + (f": {said}" if said else "")
    return None


@functools.cache
def choose(device: str, explicit: tuple[str, ...] = ()) -> DeviceChoice:
    """The providers for `device` (auto, cpu, cuda, tensorrt, openvino), or the `explicit` list as given; once
    per process, so its warnings are logged once. Raises DeviceUnavailableError when a named device cannot run here."""
    if explicit:
        return DeviceChoice("custom", tuple(_loading(usable_providers(explicit))), "VISIONSERVE_EXECUTION_PROVIDERS")
    if device == "auto":
        return _auto()
    if device not in DEVICE_PROVIDERS:
        raise DeviceUnavailableError(f"unknown device {device!r}; one of {', '.join(DEVICES)}")
    providers = DEVICE_PROVIDERS[device]
    failure = probe(providers[0])
    if failure is not None:
        raise DeviceUnavailableError(f"device {device} ({providers[0]}) cannot run on this machine: {failure}")
    if device == "tensorrt" and probe(CUDA) is not None:
        providers = (TENSORRT, CPU)
    return DeviceChoice(device, providers, f"{providers[0]} loads on this machine")


def _auto() -> DeviceChoice:
    for device in AUTO_ORDER:
        provider = DEVICE_PROVIDERS[device][0]
        failure = probe(provider)
        if failure is None:
            return DeviceChoice("auto", DEVICE_PROVIDERS[device], f"{provider} loads on this machine")
        if provider in ort.get_available_providers():
            logger.warning(
                "device auto: this onnxruntime build has %s but it does not load on this machine, so it is not "
                "used: %s",
                provider, failure,
            )  # fmt: skip
    available = ", ".join(ort.get_available_providers())
    if OPENVINO in ort.get_available_providers() and probe(OPENVINO) is None:
        reason = f"no GPU provider loads here; onnxruntime build: {available}"
        return DeviceChoice("auto", (CPU,), reason, openvino_per_model=True)
    return DeviceChoice("auto", (CPU,), f"no GPU or OpenVINO provider loads here; onnxruntime build: {available}")


def _loading(providers: list[str]) -> list[str]:
    """An explicit list without the providers that do not load here, each dropped with a warning naming the cause."""
    kept = []
    for provider in providers:
        failure = probe(provider)
        if failure is None:
            kept.append(provider)
        else:
            logger.warning("execution provider %s does not load on this machine, skipped: %s", provider, failure)
    return kept


def usable_providers(requested: tuple[str, ...]) -> list[str]:
    """The requested providers this onnxruntime build has, in order, always ending with the CPU."""
    available = set(ort.get_available_providers())
    chosen = [name for name in requested if name in available]
    missing = [name for name in requested if name not in available]
    if missing:
        logger.warning("execution providers not available in this onnxruntime build: %s", ", ".join(missing))
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen
