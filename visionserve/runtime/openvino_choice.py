"""`device=auto` with the OpenVINO build: OpenVINO or the CPU provider, whichever measured faster for this model.

On this project's 2-core VMs OpenVINO was faster for RF-DETR Nano in every run but within the noise of the CPU
provider for YOLOv8n under load (0.84 to 1.31 over three runs, README "GPU and OpenVINO"), so no rule by family
holds: each model is timed once at its first load, both providers alternating A-B-B-A at the server's threads per
pass and as many passes side by side as the server runs under load, and the answer is kept in the store keyed by the
model's hash, its input size, the threads and passes, the CPU and the onnxruntime version, so later loads and
restarts reuse it. OpenVINO must win by `MARGIN` to be chosen.

Side by side, because a pass alone says little about passes under load: on a 2-core AMD EPYC VM a lone one-thread
pass of YOLOv8n 320 took 22.1 ms on OpenVINO against 23.4 on the CPU provider (OpenVINO chosen), while two at once
ran at 0.54 of the CPU provider's rate (README "GPU and OpenVINO").
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from visionserve.models.store import sha256_of
from visionserve.runtime.engines import slug
from visionserve.runtime.onnx_model import RUNTIME_ERRORS, OnnxModel, ProviderSpec, open_session, openvino_options
from visionserve.runtime.providers import CPU, OPENVINO
from visionserve.runtime.threads import cpu_model

logger = logging.getLogger(__name__)

CHOICES_DIR = ".providers"  # <store>/.providers/<key>.json
MARGIN = 1.05  # OpenVINO's passes/s over the CPU provider's needed to choose it: less is noise on a shared VM
BLOCK_PASSES = 5
BLOCKS = 2  # A-B-B-A sequences


@dataclass(frozen=True)
class Measured:
    provider: str
    cpu_ms: float
    openvino_ms: float


def choice_key(
    model_sha256: str, input_hw: tuple[int, int], threads: int, runs: int, cpu: str, ort_version: str
) -> str:
    height, width = input_hw
    return f"{model_sha256[:16]}-{height}x{width}-t{threads}x{runs}-{slug(cpu)}-ort{slug(ort_version)}"


def _pass_ms(session: ort.InferenceSession, tensor: np.ndarray, runs: int) -> float:
    """Milliseconds of wall time per pass, `runs` threads each running `BLOCK_PASSES` passes at once."""
    name = session.get_inputs()[0].name

    def passes(_: int) -> None:
        for _ in range(BLOCK_PASSES):
            session.run(None, {name: tensor})

    started = time.perf_counter()
    with ThreadPoolExecutor(runs) as pool:
        list(pool.map(passes, range(runs)))
    return 1000 * (time.perf_counter() - started) / (BLOCK_PASSES * runs)


def measure(weights: Path, cpu_runner: OnnxModel, input_hw: tuple[int, int], threads: int) -> Measured:
    """Both providers on the same input, `concurrent_runs` passes at once as under load, alternating blocks;
    medians of each provider's blocks."""
    specs: list[ProviderSpec] = [(OPENVINO, openvino_options(threads)), CPU]
    sessions = {CPU: cpu_runner.session, OPENVINO: open_session(weights, specs, threads, spinning=True)}
    batch, runs = cpu_runner.batch_size or 1, cpu_runner.concurrent_runs
    tensor = np.random.default_rng(0).random((batch, 3, *input_hw), dtype=np.float32).astype(cpu_runner.input_dtype)
    for session in sessions.values():
        _pass_ms(session, tensor, runs)  # warm-up: OpenVINO compiles the shape on its first pass
    times: dict[str, list[float]] = {CPU: [], OPENVINO: []}
    for _ in range(BLOCKS):
        for provider in (CPU, OPENVINO, OPENVINO, CPU):
            times[provider].append(_pass_ms(sessions[provider], tensor, runs))
    cpu_ms, openvino_ms = statistics.median(times[CPU]), statistics.median(times[OPENVINO])
    return Measured(OPENVINO if cpu_ms >= MARGIN * openvino_ms else CPU, cpu_ms, openvino_ms)


def faster_provider(
    label: str, weights: Path, cpu_runner: OnnxModel, input_hw: tuple[int, int], threads: int, store_root: Path | None
) -> str:
    """The provider to run the model on (CPU or OpenVINO), measured once and kept under `store_root`."""
    key = choice_key(sha256_of(weights), input_hw, threads, cpu_runner.concurrent_runs, cpu_model(), ort.__version__)
    record = store_root / CHOICES_DIR / f"{key}.json" if store_root is not None else None
    if record is not None and record.is_file():
        return str(json.loads(record.read_text())["provider"])
    try:
        measured = measure(weights, cpu_runner, input_hw, threads)
    except RUNTIME_ERRORS as error:  # an operator OpenVINO lacks, a shape it refuses: the CPU provider runs it
        logger.warning("device auto: OpenVINO cannot run %s, so it runs on the CPU provider: %s", label, error)
        measured = Measured(CPU, 0.0, 0.0)
    logger.info(
        "device auto: %s runs on %s (%d passes of %d threads at once: %.1f ms a pass on the CPU provider, %.1f ms "
        "on OpenVINO)", label, measured.provider, cpu_runner.concurrent_runs, threads, measured.cpu_ms,
        measured.openvino_ms,
    )  # fmt: skip
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        staging = record.with_name(f"{record.name}.{os.getpid()}.tmp")  # then renamed: readers never see half
        staging.write_text(json.dumps(measured.__dict__))
        staging.replace(record)
    return measured.provider
