"""Execution providers: the `device` setting against the installed onnxruntime build, what /healthz and
/model/registry say each model runs on, TensorRT's engine-cache keys, and one engine build however many threads
and processes ask at once (on the CPU provider: the build step is a real session creation that writes its
optimized model into the cache folder, as TensorRT writes its engine).

The GPU providers cannot run here; what is checked of them is what a CPU machine can check for real (their
absence from the build, or a build that has them but cannot load them). The OpenVINO tests run when the
onnxruntime in use is the OpenVINO build (`pip install 'visionserve[openvino]'`, see the README)."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import image_value, photo
from visionserve.config import Settings
from visionserve.errors import ServiceUnavailableError
from visionserve.images.decode import DecodedImage
from visionserve.models.builtin import BuiltinModels
from visionserve.models.loader import LoadedModel, load_model
from visionserve.models.manager import EngineBuildingError, ModelManager
from visionserve.models.manifest import ModelPackage
from visionserve.models.resolver import ModelResolver
from visionserve.models.store import sha256_of
from visionserve.runtime.engines import (
    Build,
    SessionBuilds,
    built_once,
    engine_folder,
    engine_key,
    gpu_name,
    tensorrt_options,
)
from visionserve.runtime.onnx_model import RuntimeOptions
from visionserve.runtime.openvino_choice import CHOICES_DIR, choice_key, cpu_model, faster_provider
from visionserve.runtime.providers import CPU, CUDA, OPENVINO, TENSORRT, DeviceUnavailableError, choose, probe

BUILTIN = BuiltinModels()
NUDENET = BUILTIN.find("nudenet/1")
HAS_OPENVINO = OPENVINO in ort.get_available_providers()
UNLOADABLE = [device for device, provider in (("cuda", CUDA), ("tensorrt", TENSORRT), ("openvino", OPENVINO))
              if probe(provider) is not None]  # fmt: skip


def test_auto_falls_back_to_the_cpu_with_one_log_line_saying_why(start_server) -> None:
    if probe(CUDA) is None or HAS_OPENVINO:
        pytest.skip("this machine's onnxruntime has a GPU or OpenVINO provider that loads: auto need not fall back")
    server = start_server({"VISIONSERVE_LOG_LEVEL": "info"})
    with server.client() as http:
        health = http.get("/healthz").json()
    log = server.log_path.read_text().splitlines()
    lines = [line for line in log if "device auto: models run on" in line]
    assert len(lines) == 1, lines
    assert "models run on CPUExecutionProvider" in lines[0]
    assert "no GPU or OpenVINO provider loads here" in lines[0] and ", ".join(ort.get_available_providers()) in lines[0]
    # a GPU build whose CUDA does not load here: one WARNING with onnxruntime's own words, never a silent fall-back
    warnings = [line for line in log if "WARNING" in line and "does not load on this machine" in line]
    assert len(warnings) == (CUDA in ort.get_available_providers())
    assert all(probe(CUDA)[:60] in line for line in warnings)
    assert health["device"] == "auto" and health["execution_providers"] == [CPU]


@pytest.mark.parametrize("device", UNLOADABLE or ["none"])
def test_a_named_device_that_cannot_load_stops_the_server_with_the_cause(device: str, tmp_path: Path) -> None:
    if device == "none":
        pytest.skip("every device loads on this machine")
    with pytest.raises(DeviceUnavailableError, match=f"device {device} .* cannot run on this machine: "):
        choose(device)
    env = {**os.environ, "VISIONSERVE_HOME": str(tmp_path), "VISIONSERVE_WEIGHTS_API": ""}
    started = subprocess.run(
        [sys.executable, "-m", "visionserve", "serve", "--device", device, "--port", "1"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 1
    assert f"error: device {device}" in started.stderr and "cannot run on this machine" in started.stderr
    cause = probe({"cuda": CUDA, "tensorrt": TENSORRT, "openvino": OPENVINO}[device])
    assert cause[:60] in started.stderr  # what onnxruntime said, not a paraphrase


def test_device_and_an_explicit_provider_list_are_one_or_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONSERVE_EXECUTION_PROVIDERS", "CUDAExecutionProvider,CPUExecutionProvider")
    assert Settings(device="auto").execution_providers == [CUDA, CPU]
    with pytest.raises(ValueError, match="not both"):
        Settings(device="cpu")
    chosen = choose("auto", (CUDA, CPU))  # an explicit list keeps what is in the build and loads here
    assert chosen.device == "custom" and chosen.providers[-1] == CPU
    assert (CUDA in chosen.providers) == (probe(CUDA) is None)


def choice_record(home: Path, threads: int, runs: int) -> Path:
    """Where the server keeps which provider runs nudenet/1 (320), `runs` passes of `threads` at once."""
    key = choice_key(sha256_of(NUDENET.weights_path), (320, 320), threads, runs, cpu_model(), ort.__version__)
    return home / "models" / CHOICES_DIR / f"{key}.json"


def kept_choice(home: Path) -> str:
    """The provider the server measured faster for nudenet/1 (its one record)."""
    (record,) = (home / "models" / CHOICES_DIR).glob("*.json")
    return str(json.loads(record.read_text())["provider"])


def test_healthz_and_the_registry_name_the_provider_each_model_runs_on(start_server) -> None:
    server = start_server()
    with server.client() as http:
        added = http.post("/model/add", json={"model_id": "nudenet/1"}).json()
        registry = http.get("/model/registry").json()
        health = http.get("/healthz").json()
    expected = choose("auto").provider  # the same probe as the server's: this machine, this build
    if choose("auto").openvino_per_model:  # the OpenVINO build: whichever the server measured faster for it
        expected = kept_choice(server.home)
    assert added == registry
    (model,) = registry["models"]
    assert model["model_id"] == "nudenet/1" and model["execution_provider"] == expected
    assert model["lone_request_provider"] == (expected if (os.cpu_count() or 1) > 1 else None)  # over every core
    assert {"task_type", "batch_size", "input_height", "input_width", "request_paths"} <= model.keys()  # the shape
    assert registry["building"] == []
    assert health["status"] == "healthy" and health["models"] == {"nudenet/1": expected}


def test_healthz_names_no_model_when_the_server_has_keys(start_server) -> None:
    server = start_server({"VISIONSERVE_API_KEYS": "secret", "VISIONSERVE_PRELOAD_MODELS": "nudenet/1"})
    with server.client() as http:
        assert http.get("/model/registry", params={"api_key": "secret"}).json()["models"][0]["execution_provider"]
        health = http.get("/healthz").json()
    assert health["models"] == {} and health["execution_providers"]


def test_engine_keys_name_the_model_the_gpu_and_the_tensorrt_version() -> None:
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert engine_key(sha, "NVIDIA H200", "10.9.0.34") == "9f86d081884c7d65-nvidia-h200-trt10.9.0.34"
    assert engine_key(sha, "NVIDIA GeForce RTX 4090", "10.9.0.34") == (
        "9f86d081884c7d65-nvidia-geforce-rtx-4090-trt10.9.0.34")
    assert engine_key(sha, "../../etc", "8.6") == "9f86d081884c7d65-etc-trt8.6"  # never a path
    keys = {engine_key(sha, gpu, version) for gpu in ("NVIDIA H200", "NVIDIA A10G") for version in ("10.9", "10.11")}
    assert len(keys) == 4 and engine_key("a" * 64, "NVIDIA H200", "10.9") not in keys
    with pytest.raises(ValueError):
        engine_key("not-a-hash", "NVIDIA H200", "10.9")


def test_the_gpu_name_is_read_from_the_driver(tmp_path: Path) -> None:
    for index, model in enumerate(("NVIDIA H200", "NVIDIA A10G")):
        card = tmp_path / f"0000:0{index + 1}:00.0"
        card.mkdir()
        (card / "information").write_text(f"Model: \t\t {model}\nIRQ:\t\t 42\nGPU UUID: \t GPU-1234\n")
    assert [gpu_name(0, tmp_path), gpu_name(1, tmp_path), gpu_name(2, tmp_path)] == [
        "NVIDIA H200", "NVIDIA A10G", "unknown-gpu"]
    assert gpu_name(0, tmp_path / "absent") == "unknown-gpu"


def test_tensorrt_engines_are_cached_next_to_the_onnx_file_in_the_store(tmp_path: Path) -> None:
    store = tmp_path / "models"
    weights = store / "cars" / "3" / "weights.onnx"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(NUDENET.weights_path.read_bytes())
    key = engine_key(sha256_of(weights), gpu_name(), "any")
    assert engine_folder(weights, key, store) == weights.parent / "engines" / key
    assert engine_folder(NUDENET.weights_path, key, store) == store / ".engines" / key  # built in: not its package
    options = tensorrt_options(weights, store, fp16=True)
    assert options["trt_fp16_enable"] == "True" and options["trt_engine_cache_enable"] == "True"
    folder = Path(options["trt_engine_cache_path"])
    assert folder.parent == weights.parent / "engines" and folder.name.startswith(sha256_of(weights)[:16])
    assert folder.is_dir() and options["trt_timing_cache_path"] == str(folder)
    assert tensorrt_options(weights, store, fp16=False)["trt_fp16_enable"] == "False"


def test_openvino_choices_are_kept_per_model_input_threads_passes_cpu_and_onnxruntime() -> None:
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    key = choice_key(sha, (320, 320), 1, 2, "Intel(R) Xeon(R) Platinum 8488C", "1.24.1")
    assert key == "9f86d081884c7d65-320x320-t1x2-intel-r-xeon-r-platinum-8488c-ort1.24.1"
    assert choice_key(sha, (640, 640), 1, 2, "Intel(R) Xeon(R) Platinum 8488C", "1.24.1") != key
    assert choice_key(sha, (320, 320), 2, 2, "Intel(R) Xeon(R) Platinum 8488C", "1.24.1") != key
    assert choice_key(sha, (320, 320), 1, 1, "Intel(R) Xeon(R) Platinum 8488C", "1.24.1") != key
    assert choice_key(sha, (320, 320), 1, 2, "AMD EPYC 7R13 Processor", "1.24.1") != key


def open_cached(folder: Path, weights: Path, builds_log: Path) -> float:
    """The stand-in for a TensorRT engine build, on the CPU: under the engine lock, the first session creation
    writes its optimized model into the folder, and later ones load that instead. One pass's checksum."""
    optimized = folder / "model.optimized.onnx"
    options = ort.SessionOptions()
    with built_once(folder):
        if optimized.exists():
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            session = ort.InferenceSession(str(optimized), options, providers=[CPU])
        else:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # portable
            options.optimized_model_filepath = str(optimized)
            session = ort.InferenceSession(str(weights), options, providers=[CPU])
            with builds_log.open("a") as log:
                log.write(f"{os.getpid()} {threading.get_ident()}\n")
    image = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    return float(session.run(None, {session.get_inputs()[0].name: image})[0].sum())


def open_cached_in_threads(folder: Path, weights: Path, builds_log: Path, threads: int, out: Path) -> None:
    start = threading.Barrier(threads)
    sums: list[float] = []

    def one() -> None:
        start.wait()
        sums.append(open_cached(folder, weights, builds_log))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.write_text("\n".join(map(repr, sums)))


def test_an_engine_is_built_once_across_threads_and_processes(tmp_path: Path) -> None:
    folder = engine_folder(NUDENET.weights_path, engine_key("b" * 64, "cpu", "none"), tmp_path)
    builds_log = tmp_path / "builds.log"
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=open_cached_in_threads, args=(folder, NUDENET.weights_path, builds_log, 3,
                                                           tmp_path / f"sums{index}"))
        for index in range(2)
    ]  # fmt: skip
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=240)
        assert process.exitcode == 0
    assert len(builds_log.read_text().splitlines()) == 1  # six callers, two processes: one build
    sums = [float(line) for index in range(2) for line in (tmp_path / f"sums{index}").read_text().splitlines()]
    assert len(sums) == 6 and np.allclose(sums, sums[0], rtol=1e-5)  # the cached model answers as the built one


class SlowBuilds(SessionBuilds):
    """Session builds that take at least `hold_s`, like a slow disk: a fast machine creates NudeNet's session
    within one progress interval, and then no line was due (seen in CI)."""

    def __init__(self, every_s: float, hold_s: float) -> None:
        super().__init__(every_s)
        self.hold_s = hold_s

    @contextlib.contextmanager
    def building(self, label: str, provider: str, engine: bool) -> Iterator[Build]:
        with super().building(label, provider, engine) as build:
            yield build
            time.sleep(self.hold_s)


def test_a_slow_session_creation_logs_its_progress(caplog: pytest.LogCaptureFixture) -> None:
    builds = SlowBuilds(every_s=0.02, hold_s=0.3)
    options = RuntimeOptions(builds=builds)
    with caplog.at_level(logging.INFO, logger="visionserve.runtime.engines"):
        model = load_model("nudenet/1", NUDENET, options, max_batch_size=1)
    assert model.predictor.runner.provider == CPU
    progress = [record.getMessage() for record in caplog.records]
    assert progress and progress[0].startswith("creating session for nudenet/1 (CPUExecutionProvider), ")
    assert builds.current() == []


def test_requests_during_an_engine_build_get_a_503_with_retry_after(tmp_path: Path) -> None:
    """Another process holds the engine's lock (it is building): the load waits on it, shown as an engine build;
    requests meanwhile are answered at once, and the model is served once the lock is free."""
    builds = SessionBuilds()
    folder = tmp_path / "engines" / "key"

    def load(model_id: str, package: ModelPackage) -> LoadedModel:
        with builds.building(model_id, TENSORRT, engine=True), built_once(folder):  # OnnxModel's TensorRT path
            return load_model(model_id, package, RuntimeOptions(), max_batch_size=1)

    manager = ModelManager(ModelResolver([BUILTIN]), load, max_active=2, builds=builds)
    other_process = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
         "lock.acquire(); print('held', flush=True); sys.stdin.read()", str(folder.with_name("key.lock"))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other_process.stdout.readline().strip() == "held"
        for _ in range(2):  # the caller that started the load, then one arriving during the build
            with pytest.raises(EngineBuildingError) as refused:
                manager.get("nudenet/1")
            assert isinstance(refused.value, ServiceUnavailableError) and refused.value.status_code == 503
            assert refused.value.headers == {"Retry-After": "10"}
            assert "building engine, " in refused.value.message
        (build,) = manager.building()
        assert (build.label, build.provider, build.engine) == ("nudenet/1", TENSORRT, True)
    finally:
        other_process.communicate("", timeout=30)
    for _ in range(200):
        if not manager.building():
            break
        threading.Event().wait(0.1)
    assert manager.get("nudenet/1").predictor.runner.provider == CPU


@pytest.mark.skipif(not HAS_OPENVINO, reason="this onnxruntime is not the OpenVINO build (pip install "
                    "'visionserve[openvino]')")  # fmt: skip
def test_openvino_answers_as_the_cpu_provider_box_for_box() -> None:
    assert choose("openvino").providers == (OPENVINO, CPU)
    images = [DecodedImage.full(photo(name)) for name in ("astronaut", "coffee", "chelsea")]
    answers = {}
    for provider in (OPENVINO, CPU):
        options = RuntimeOptions(providers=tuple(dict.fromkeys((provider, CPU))))
        model = load_model("nudenet/1", NUDENET, options, max_batch_size=1)
        assert model.predictor.runner.provider == provider
        answers[provider] = model.predictor.predict(images, {"confidence": 0.05})
    for openvino, cpu in zip(answers[OPENVINO], answers[CPU], strict=True):
        assert_same_boxes(openvino["predictions"], cpu["predictions"])


def assert_same_boxes(ours: list[dict], theirs: list[dict]) -> None:
    """OpenVINO's detections against the CPU provider's: the same boxes within 1 px and 0.002 confidence."""
    assert len(ours) == len(theirs) > 0
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine["class_id"] == reference["class_id"]
        assert abs(mine["confidence"] - reference["confidence"]) < 2e-3
        for side in ("x", "y", "width", "height"):
            assert abs(mine[side] - reference[side]) <= 1.0


@pytest.mark.skipif(not HAS_OPENVINO, reason="this onnxruntime is not the OpenVINO build")
def test_auto_runs_each_model_where_it_measured_faster_and_keeps_the_answer(start_server, tmp_path: Path) -> None:
    assert choose("auto").openvino_per_model  # no GPU here: OpenVINO is weighed model by model
    options = RuntimeOptions(intra_op_threads=1, concurrent_runs=2)  # measured as under load: 2 passes at once
    runner = load_model("nudenet/1", NUDENET, options, max_batch_size=1).predictor.runner
    store = tmp_path / "store"
    chosen = faster_provider("nudenet/1", NUDENET.weights_path, runner, (320, 320), 1, store)
    (record,) = (store / CHOICES_DIR).glob("*.json")
    kept = json.loads(record.read_text())
    assert kept["provider"] == chosen and kept["cpu_ms"] > 0 and kept["openvino_ms"] > 0
    assert (kept["cpu_ms"] >= 1.05 * kept["openvino_ms"]) == (chosen == OPENVINO)
    assert record.stem == choice_key(sha256_of(NUDENET.weights_path), (320, 320), 1, 2, cpu_model(), ort.__version__)
    kept["provider"] = CPU if chosen == OPENVINO else OPENVINO  # what a restart reads instead of measuring again
    record.write_text(json.dumps(kept))
    assert faster_provider("nudenet/1", NUDENET.weights_path, runner, (320, 320), 1, store) == kept["provider"]
    server = start_server({"VISIONSERVE_INTRA_OP_THREADS": "1", "VISIONSERVE_PRELOAD_MODELS": "nudenet/1"})
    with server.client() as http:
        (model,) = http.get("/model/registry").json()["models"]
    assert model["execution_provider"] == kept_choice(server.home)


@pytest.mark.skipif(not HAS_OPENVINO, reason="this onnxruntime is not the OpenVINO build")
@pytest.mark.parametrize("provider", [CPU, OPENVINO])
def test_the_kept_choice_decides_both_sessions_and_they_answer_as_the_cpu(
    start_server, tmp_path: Path, provider: str
) -> None:
    """A kept record (as a measurement left it) decides the model's provider, and a lone request's pass over both
    cores runs on the same one (OpenVINO's threads too, not one); either answers as the CPU provider does."""
    home = tmp_path / "home"
    record = choice_record(home, 1, 2)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"provider": provider, "cpu_ms": 1.0, "openvino_ms": 1.0}))
    env = {"VISIONSERVE_INTRA_OP_THREADS": "1", "VISIONSERVE_CONCURRENT_RUNS": "2",
           "VISIONSERVE_LONE_REQUEST_THREADS": "2", "VISIONSERVE_PRELOAD_MODELS": "nudenet/1"}  # fmt: skip
    served = start_server(env, home=home)
    reference = start_server({"VISIONSERVE_DEVICE": "cpu", "VISIONSERVE_PRELOAD_MODELS": "nudenet/1"})
    body = {"model_id": "nudenet/1", "image": image_value(photo("astronaut")), "confidence": 0.05}
    answers = []
    for server in (served, reference):
        with server.client() as http:
            (model,) = http.get("/model/registry").json()["models"]
            answers.append(http.post("/infer/object_detection", json=body).json()["predictions"])
        if server is served:
            assert (model["execution_provider"], model["lone_request_provider"]) == (provider, provider)
    assert_same_boxes(*answers)
