"""Cross-request dynamic batching on real ONNX sessions: passes queued behind a busy core merge into one pass whose
rows equal the passes run alone; the row bound, the input shape and the delay bound are kept; a graph whose outputs
do not follow the batch axis falls back to passes alone; over HTTP, concurrent requests get the answers they get
alone and a bad image fails only its own request."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import FIXTURES, b64, fixture_models_home
from tests.onnx_edit import constant_outputs
from visionserve.runtime.batching import BatchingPolicy, DynamicBatcher, merged_totals
from visionserve.runtime.onnx_model import OnnxModel, RuntimeOptions

DYNAMIC = FIXTURES / "models" / "shapes-detect-dynamic.onnx"


def one_core_runner(path: Path = DYNAMIC) -> OnnxModel:
    return OnnxModel(path, RuntimeOptions(intra_op_threads=1, concurrent_runs=1))


def run_behind_busy_core(batcher: DynamicBatcher, tensors: list[np.ndarray]) -> tuple[list[list[np.ndarray]], dict]:
    """Hold the runner's only core until every pass has queued, then let them go; their outputs, and how many
    merged passes (and requests in them) that made."""
    before = merged_totals()
    results: list[list[np.ndarray] | None] = [None] * len(tensors)

    def run(index: int) -> None:
        results[index] = batcher.run(tensors[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(tensors))]
    with batcher.runner.cores.forward(False):
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while batcher.queued < len(tensors):
            assert time.monotonic() < deadline, f"only {batcher.queued} passes queued"
            time.sleep(0.005)
    for thread in threads:
        thread.join(10)
    after = merged_totals()
    return results, {key: after[key] - before[key] for key in after}  # type: ignore[return-value]


def tensors_of(rows: list[int], side: int = 160) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.random((count, 3, side, side), dtype=np.float32) for count in rows]


def assert_same_as_alone(runner: OnnxModel, tensors: list[np.ndarray], results: list[list[np.ndarray]]) -> None:
    for tensor, outputs in zip(tensors, results):
        alone = runner.run(tensor)
        assert [output.shape for output in outputs] == [output.shape for output in alone]
        for merged, single in zip(outputs, alone):
            np.testing.assert_allclose(merged, single, rtol=1e-4, atol=1e-3)


def test_passes_queued_behind_a_busy_core_merge_into_one() -> None:
    runner = one_core_runner()
    tensors = tensors_of([1, 2, 1, 1, 3])
    results, merged = run_behind_busy_core(DynamicBatcher(runner, BatchingPolicy(max_rows=16)), tensors)
    assert merged == {"passes": 1, "requests": 5}
    assert_same_as_alone(runner, tensors, results)


def test_merged_passes_keep_the_row_bound_and_the_input_shape() -> None:
    runner = one_core_runner()
    small, large = tensors_of([1, 1, 1, 1, 1]), tensors_of([1, 1], side=192)
    tensors = [small[0], large[0], *small[1:], large[1]]
    results, merged = run_behind_busy_core(DynamicBatcher(runner, BatchingPolicy(max_rows=3)), tensors)
    assert merged == {"passes": 3, "requests": 7}  # 160: 3 + 2 rows; 192: 2 rows, never with the 160s
    assert_same_as_alone(runner, tensors, results)


def test_outputs_off_the_batch_axis_fall_back_to_passes_alone(tmp_path: Path) -> None:
    path = constant_outputs(tmp_path / "flat.onnx", "images", ["batch", 3, 8, 8], {"out": [1, 5]})
    runner = one_core_runner(path)
    tensors = [np.zeros((1, 3, 8, 8), np.float32) for _ in range(3)]
    results, merged = run_behind_busy_core(DynamicBatcher(runner, BatchingPolicy(max_rows=8)), tensors)
    assert merged["passes"] == 1  # tried merged once, then each alone: every answer is its own
    assert_same_as_alone(runner, tensors, results)


def test_the_delay_bounds_the_wait_for_more_requests() -> None:
    runner = one_core_runner()
    batcher = DynamicBatcher(runner, BatchingPolicy(max_rows=4, max_delay_s=0.3))
    (tensor,) = tensors_of([1])
    started = time.monotonic()
    batcher.run(tensor)  # nobody joins: it waits the whole delay, and no longer
    assert 0.3 <= time.monotonic() - started < 1.3
    before = merged_totals()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(batcher.run, tensor)
        time.sleep(0.05)
        second = pool.submit(batcher.run, tensor)
        first.result(5), second.result(5)
    assert merged_totals()["requests"] - before["requests"] == 2  # the second joined the first's pass
    full = DynamicBatcher(runner, BatchingPolicy(max_rows=1, max_delay_s=5.0))
    started = time.monotonic()
    full.run(tensor)  # already max_rows: no wait at all
    assert time.monotonic() - started < 2.0


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a Server
    from tests.conftest import Server

    home = fixture_models_home(tmp_path_factory.mktemp("batching-home"))
    running = Server(home, {"VISIONSERVE_DYNAMIC_BATCHING": "on", "VISIONSERVE_CONCURRENT_RUNS": "1",
                            "VISIONSERVE_INTRA_OP_THREADS": "1", "VISIONSERVE_LONE_REQUEST_THREADS": "1"}).start()
    yield running
    running.stop()


def boxes(answer: dict) -> list[tuple]:
    return [(p["class"], p["x"], p["y"], p["width"], p["height"], p["confidence"]) for p in answer["predictions"]]


def test_concurrent_requests_answer_as_alone_and_a_bad_image_fails_alone(batching_server) -> None:  # noqa: ANN001
    names = [f"detect_{index}.jpg" for index in range(6)]
    bodies = [{"model_id": "shapes-detect-dynamic/1", "confidence": 0.25,
               "image": {"type": "base64", "value": b64((FIXTURES / "images" / name).read_bytes())}}
              for name in names]  # fmt: skip
    bad = {"model_id": "shapes-detect-dynamic/1", "image": {"type": "base64", "value": b64(b"not an image")}}
    with httpx.Client(base_url=batching_server.url, timeout=60) as http:
        alone = [boxes(http.post("/infer/object_detection", json=body).json()) for body in bodies]

        def post(body: dict) -> httpx.Response:
            return http.post("/infer/object_detection", json=body)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for _ in range(4):
                answers = list(pool.map(post, [*bodies, bad, *bodies]))
                assert answers[len(bodies)].status_code == 400 and answers[len(bodies)].json()["message"]
                together = [boxes(a.json()) for a in answers if a.status_code == 200]
                assert len(together) == 2 * len(bodies)
                for got, expected in zip(together, alone * 2):
                    assert [g[0] for g in got] == [e[0] for e in expected]
                    np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=0.01)
        metrics = http.get("/metrics").text
    merged = [line for line in metrics.splitlines() if line.startswith("visionserve_merged_requests_total")]
    assert merged and float(merged[0].split()[-1]) > 0, merged
