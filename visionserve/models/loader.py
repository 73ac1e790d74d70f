"""Turning a model package into a ready-to-run model: session, predictor, one warm-up pass."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from visionserve.errors import ModelPackageError
from visionserve.models.manifest import ModelManifest, ModelPackage, Task
from visionserve.runtime.onnx_model import RUNTIME_ERRORS, OnnxModel, RuntimeOptions
from visionserve.tasks.base import Predictor
from visionserve.tasks.registry import predictor_class

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    package: ModelPackage
    predictor: Predictor
    load_seconds: float

    @property
    def manifest(self) -> ModelManifest:
        return self.package.manifest

    @property
    def task(self) -> Task:
        return self.package.manifest.task


def open_session(weights: Path, options: RuntimeOptions) -> OnnxModel:
    try:
        return OnnxModel(weights, options)
    except RUNTIME_ERRORS as error:
        cause = str(error).replace(str(weights.parent), "")  # the server's paths are nobody else's business
        raise ModelPackageError(f"cannot open {weights.name} as an ONNX model: {cause}") from None


def build_predictor(package: ModelPackage, runner: OnnxModel, max_batch_size: int) -> Predictor:
    manifest = package.manifest
    return predictor_class(manifest.family, manifest.task)(manifest, runner, max_batch_size)


def load_model(model_id: str, package: ModelPackage, options: RuntimeOptions, max_batch_size: int) -> LoadedModel:
    started = time.perf_counter()
    predictor = build_predictor(package, open_session(package.weights_path, options), max_batch_size)
    elapsed = time.perf_counter() - started
    logger.info(
        "loaded model %s (%s, %d classes, input %s, providers %s) in %.2f s",
        model_id,
        package.manifest.task.value,
        len(package.manifest.class_names),
        "x".join(map(str, predictor.input_hw)),
        ",".join(predictor.runner.providers),
        elapsed,
    )
    return LoadedModel(model_id=model_id, package=package, predictor=predictor, load_seconds=elapsed)
