"""ONNX Runtime sessions, provider choice, settings, and batching a list into one forward pass."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import photo
from visionserve.config import Settings
from visionserve.images.decode import DecodedImage
from visionserve.models.builtin import BuiltinModels
from visionserve.models.loader import load_model
from visionserve.runtime.onnx_model import RuntimeOptions
from visionserve.runtime.providers import usable_providers


def test_unavailable_providers_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        chosen = usable_providers(("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"))
    assert chosen[-1] == "CPUExecutionProvider"
    if chosen == ["CPUExecutionProvider"]:
        assert "not available" in caplog.text


def test_cpu_is_always_the_last_resort() -> None:
    assert usable_providers(()) == ["CPUExecutionProvider"]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VISIONSERVE_HOST", "0.0.0.0")
    monkeypatch.setenv("VISIONSERVE_PORT", "9555")
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path))
    monkeypatch.setenv("VISIONSERVE_EXECUTION_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    settings = Settings()
    assert (settings.host, settings.port) == ("0.0.0.0", 9555)
    assert settings.execution_providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert settings.models_dir == tmp_path / "models"


def test_defaults_are_safe() -> None:
    settings = Settings(_env_file=None)
    assert settings.host == "127.0.0.1" and settings.port == 9001


class CountingRunner:
    """Wraps a session's run to count forward passes and their batch sizes."""

    def __init__(self, runner) -> None:
        self.runner, self.batches = runner, []
        self.original = runner.run

    def __call__(self, batch: np.ndarray, may_widen: bool = False) -> list[np.ndarray]:
        self.batches.append(batch.shape[0])
        return self.original(batch, may_widen)


def test_a_dynamic_batch_model_runs_a_list_as_one_batch() -> None:
    package = BuiltinModels().find("nudenet/1")
    model = load_model("nudenet/1", package, RuntimeOptions(), max_batch_size=4)
    counter = CountingRunner(model.predictor.runner)
    model.predictor.runner.run = counter  # type: ignore[method-assign]
    names = ["astronaut", "coffee", "chelsea", "rocket", "astronaut"]
    images = [DecodedImage.full(photo(name)) for name in names]
    batched = model.predictor.predict(images, {"confidence": 0.1})
    assert sorted(counter.batches) == [1, 4]  # chunks of max_batch_size, run side by side
    singles = [model.predictor.predict([image], {"confidence": 0.1})[0] for image in images]
    strip = lambda r: [(p["class_id"], round(p["confidence"], 4), p["x"], p["y"]) for p in r["predictions"]]
    assert [strip(r) for r in batched] == [strip(r) for r in singles]


ARENAS_SCRIPT = """
import ctypes, os, sys, tempfile, threading
import numpy as np
from visionserve.runtime.memory import limit_malloc_arenas
limited = limit_malloc_arenas(int(sys.argv[1]))
barrier = threading.Barrier(8)
def churn():
    barrier.wait()
    for _ in range(2000):
        blocks = [np.ones(4096) for _ in range(8)]  # 32 KiB each: from malloc's arenas, not mmap
        del blocks
threads = [threading.Thread(target=churn) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    handle = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(handle))
    libc.fclose(ctypes.c_void_p(handle))
    print(limited, open(out.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt and malloc_info")
def test_malloc_arenas_are_limited_unless_malloc_arena_max_is_set() -> None:
    """Eight threads churning 32 KiB blocks at once: glibc gives them arenas of their own, unless limited."""
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}

    def arenas(limit: int, extra: dict[str, str] | None = None) -> tuple[str, int]:
        printed = subprocess.run([sys.executable, "-c", ARENAS_SCRIPT, str(limit)], env={**env, **(extra or {})},
                                 capture_output=True, text=True, timeout=120, check=True).stdout.split()  # fmt: skip
        return printed[0], int(printed[1])

    assert arenas(2) == ("True", 2)
    limited, unlimited = arenas(0)
    assert limited == "False" and unlimited > 2
    assert arenas(2, {"MALLOC_ARENA_MAX": "3"})[0] == "False"  # the operator's own setting wins
    assert Settings().malloc_arenas == 2
