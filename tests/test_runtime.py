"""ONNX Runtime sessions, provider choice, settings, and batching a list into one forward pass."""

from __future__ import annotations

import logging
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
