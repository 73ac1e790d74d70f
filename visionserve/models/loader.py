"""Turning a model package into a ready-to-run model: session, predictor, one warm-up pass.

Sizes a package declares are checked first: a network input, fixed batch or class list far past any real
model's would make the warm-up pass, and every request after it, allocate tensors of that size.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from visionserve.errors import ModelPackageError
from visionserve.models.manifest import ModelManifest, ModelPackage, Task
from visionserve.runtime.batching import BatchingPolicy, DynamicBatcher
from visionserve.runtime.onnx_model import RUNTIME_ERRORS, OnnxModel, RuntimeOptions
from visionserve.runtime.openvino_choice import faster_provider
from visionserve.runtime.providers import CPU, OPENVINO
from visionserve.tasks.base import Predictor, resolve_input_size
from visionserve.tasks.preprocess import MAX_INPUT_PIXELS
from visionserve.tasks.registry import predictor_class

logger = logging.getLogger(__name__)

MAX_FIXED_BATCH = 64
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841

BatchingChoice = Callable[[str, OnnxModel], BatchingPolicy | None]  # (model id, its session) -> policy, or None


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


def open_session(weights: Path, options: RuntimeOptions, label: str | None = None) -> OnnxModel:
    try:
        return OnnxModel(weights, options, label)
    except RUNTIME_ERRORS as error:
        cause = str(error)
        if weights.parent != Path("."):  # the server's folders are nobody else's business
            cause = cause.replace(f"{weights.parent}{os.sep}", "")
        raise ModelPackageError(f"cannot open {weights.name} as an ONNX model: {cause}") from None


def check_declared_sizes(manifest: ModelManifest, runner: OnnxModel) -> None:
    """Refuse the package before anything is allocated for the sizes it declares."""
    height, width = resolve_input_size(manifest, runner)
    if height * width > MAX_INPUT_PIXELS:
        declared_by = "the ONNX input" if runner.input_hw else "environment.json or the manifest"
        raise ModelPackageError(
            f"its input size {height}x{width} (from {declared_by}) is over the limit of {MAX_INPUT_PIXELS:,} pixels"
        )
    if (runner.batch_size or 1) > MAX_FIXED_BATCH:
        raise ModelPackageError(f"its fixed batch size {runner.batch_size} is over the limit of {MAX_FIXED_BATCH}")
    if len(manifest.class_names) > MAX_CLASSES:
        raise ModelPackageError(f"it names {len(manifest.class_names)} classes, over the limit of {MAX_CLASSES}")


def build_predictor(package: ModelPackage, runner: OnnxModel, max_batch_size: int) -> Predictor:
    manifest = package.manifest
    check_declared_sizes(manifest, runner)
    return predictor_class(manifest.family, manifest.task)(manifest, runner, max_batch_size)


def open_fastest(model_id: str, package: ModelPackage, options: RuntimeOptions) -> OnnxModel:
    """The model's session; with `openvino_per_model`, on OpenVINO when it measured faster than the CPU provider."""
    runner = open_session(package.weights_path, options, model_id)
    if not options.openvino_per_model:
        return runner
    input_hw = resolve_input_size(package.manifest, runner)
    threads = max(1, options.intra_op_threads)
    if faster_provider(model_id, package.weights_path, runner, input_hw, threads, options.engine_root) == CPU:
        return runner
    return open_session(package.weights_path, replace(options, providers=(OPENVINO, CPU)), model_id)


def load_model(model_id: str, package: ModelPackage, options: RuntimeOptions, max_batch_size: int,
               batching: BatchingChoice | None = None) -> LoadedModel:  # fmt: skip
    started = time.perf_counter()
    predictor = build_predictor(package, open_fastest(model_id, package, options), max_batch_size)
    policy = batching(model_id, predictor.runner) if batching is not None and predictor.batchable else None
    if policy is not None:
        predictor.batcher = DynamicBatcher(predictor.runner, policy)
    elapsed = time.perf_counter() - started
    logger.info(
        "loaded model %s (%s, %d classes, input %s, providers %s, dynamic batching %s) in %.2f s",
        model_id,
        package.manifest.task.value,
        len(package.manifest.class_names),
        "x".join(map(str, predictor.input_hw)),
        ",".join(predictor.runner.providers),
        "off" if policy is None else f"up to {policy.max_rows} images, {1000 * policy.max_delay_s:g} ms",
        elapsed,
    )
    return LoadedModel(model_id=model_id, package=package, predictor=predictor, load_seconds=elapsed)
