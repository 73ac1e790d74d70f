"""TensorRT engines and slow session builds: where engines are cached, under which key, built once across threads
and processes, and what the server says while a session is being created.

TensorRT compiles a model for one GPU with one TensorRT version; that takes seconds to many minutes, so the
engine is cached in the model store next to the ONNX file, in a folder keyed by the model's hash, the GPU's name
and the TensorRT version (a restart, or another worker process, loads it instead of building it again). The
reference's users report 10-minute builds with no word while their requests time out: here a build logs a line
every few seconds and shows in /model/registry, and requests meanwhile get a 503 with Retry-After.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from visionserve.filelocks import held, lock_beside
from visionserve.models.store import sha256_of

logger = logging.getLogger(__name__)

ENGINES_DIR = "engines"  # <model folder>/engines/<key>/, or <engine root>/.engines/<key>/ for built-in models
PROGRESS_EVERY_S = 5.0
_TENSORRT_DISTRIBUTIONS = ("tensorrt", "tensorrt-cu12", "tensorrt-cu12-libs", "tensorrt-cu13", "tensorrt-cu13-libs")


def slug(text: str) -> str:
    """A piece of a file name: lower case letters, digits, dots and dashes only."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unknown"


def engine_key(model_sha256: str, gpu_name: str, tensorrt_version: str) -> str:
    """The cache folder's name: an engine is only valid for the same model on the same GPU with the same TensorRT."""
    if not re.fullmatch(r"[0-9a-f]{16,64}", model_sha256):
        raise ValueError(f"not a model hash: {model_sha256!r}")
    return f"{model_sha256[:16]}-{slug(gpu_name)}-trt{slug(tensorrt_version)}"


def gpu_name(device_id: int = 0, proc: Path = Path("/proc/driver/nvidia/gpus")) -> str:
    """The NVIDIA driver's name for GPU `device_id` (in PCI order, as CUDA numbers them by default)."""
    folders = sorted(proc.iterdir()) if proc.is_dir() else []
    if device_id >= len(folders):
        return "unknown-gpu"
    for line in (folders[device_id] / "information").read_text(errors="replace").splitlines():
        if line.startswith("Model:"):
            return line.split(":", 1)[1].strip()
    return "unknown-gpu"


def tensorrt_version() -> str:
    """The installed TensorRT's version: its pip package's, else the library's own (getInferLibVersion)."""
    for distribution in _TENSORRT_DISTRIBUTIONS:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    for library in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so"):
        try:
            number = ctypes.CDLL(library).getInferLibVersion()
        except (OSError, AttributeError):
            continue
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}" if number >= 10000 else str(number)
    return "unknown"


def engine_folder(weights: Path, key: str, engine_root: Path | None = None) -> Path:
    """Next to the ONNX file when it is in the store (`engine_root`), so removing the model removes its engines;
    models outside it (built-in ones, in the installed package) keep theirs under the store's `.engines`."""
    if engine_root is None or weights.resolve().is_relative_to(engine_root.resolve()):
        return weights.parent / ENGINES_DIR / key
    return engine_root / f".{ENGINES_DIR}" / key


def tensorrt_options(weights: Path, engine_root: Path | None, fp16: bool) -> dict[str, str]:
    """TensorRT's provider options: FP16 (TensorRT keeps FP32 for the layers that need it), engine and timing caches
    in the model's engine folder."""
    folder = engine_folder(weights, engine_key(sha256_of(weights), gpu_name(), tensorrt_version()), engine_root)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "trt_fp16_enable": "True" if fp16 else "False",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(folder),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(folder),
    }


@contextmanager
def built_once(folder: Path, timeout_s: float = -1) -> Iterator[None]:
    """Hold the engine folder's lock (shared by every process) around a session creation: the first holder builds
    the engine into the folder, the others wait and then load what it wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    with held(lock_beside(folder), timeout_s):
        yield


@dataclass
class Build:
    """A session under construction."""

    label: str
    provider: str
    engine: bool  # an engine build (TensorRT): long, so requests meanwhile are answered 503
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def state(self) -> str:
        return f"{'building engine' if self.engine else 'creating session'}, {self.seconds:.0f} s"


class SessionBuilds:
    """The sessions this process is creating, with a progress line every `every_s` while one takes long."""

    def __init__(self, every_s: float = PROGRESS_EVERY_S) -> None:
        self.every_s = every_s
        self._builds: dict[str, Build] = {}
        self._lock = threading.Lock()

    @contextmanager
    def building(self, label: str, provider: str, engine: bool) -> Iterator[Build]:
        build = Build(label, provider, engine)
        done = threading.Event()
        with self._lock:
            self._builds[label] = build
        reporter = threading.Thread(target=self._report, args=(build, done), daemon=True, name=f"build-{label}")
        reporter.start()
        try:
            yield build
        finally:
            done.set()
            with self._lock:
                if self._builds.get(label) is build:
                    del self._builds[label]
            reporter.join()

    def _report(self, build: Build, done: threading.Event) -> None:
        while not done.wait(self.every_s):
            what = "building engine" if build.engine else "creating session"
            logger.info("%s for %s (%s), %.0f s", what, build.label, build.provider, build.seconds)

    def get(self, label: str) -> Build | None:
        with self._lock:
            return self._builds.get(label)

    def current(self) -> list[Build]:
        with self._lock:
            return list(self._builds.values())
