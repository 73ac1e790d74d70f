"""Threads from cores: the plan for any machine size, the budget that lets a lone request widen its forward pass,
and the same seen through a real server's counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, image_value, photo
from visionserve.runtime.cores import CoreBudget
from visionserve.runtime.threads import _cgroup_cpu_limit, available_cores, plan_threads

WAIT_S = 5  # no step of these tests should take this long: a hang fails instead of blocking the suite


@pytest.mark.parametrize(
    ("cores", "expected"),
    [(1, (1, 1, 1, 4)), (2, (1, 2, 2, 4)), (8, (1, 8, 8, 16)), (64, (4, 16, 16, 32))],
)
def test_default_plans(cores: int, expected: tuple[int, int, int, int]) -> None:
    plan = plan_threads(cores)
    assert (plan.run_threads, plan.concurrent_runs, plan.lone_threads, plan.worker_threads) == expected


def test_no_default_plan_has_more_busy_threads_than_cores() -> None:
    for cores in range(1, 129):
        plan = plan_threads(cores)
        assert plan.run_threads * plan.concurrent_runs <= cores
        assert plan.run_threads <= plan.lone_threads <= cores
        assert plan.concurrent_runs <= 16


def test_explicit_values_win_and_processes_share_the_cores() -> None:
    one_pass = plan_threads(2, concurrent_runs=1)
    assert (one_pass.run_threads, one_pass.concurrent_runs, one_pass.lone_threads) == (2, 1, 2)
    assert plan_threads(8, run_threads=2).concurrent_runs == 4
    assert plan_threads(8, lone_threads=1, run_threads=2).lone_threads == 2  # never below a loaded pass
    assert plan_threads(8, worker_threads=3).worker_threads == 3
    shared = plan_threads(8, processes=2)
    assert (shared.cores, shared.concurrent_runs, shared.lone_threads) == (4, 4, 4)


def test_container_cpu_quota(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_limit(v2) is None
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_limit(v2) == 1.5
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_cpu_limit(v1) is None
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    assert _cgroup_cpu_limit(v1) == 2.0
    assert _cgroup_cpu_limit(tmp_path / "none") is None
    assert available_cores() >= 1


class Clock:
    """A clock the test moves by hand, so the budget's quiet time is exact."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def in_thread(work: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_lone_job_widens_and_holds_every_slot() -> None:
    budget = CoreBudget(2, clock=Clock())
    wide_started, narrow_done = threading.Event(), threading.Event()
    with budget.job(), budget.forward(may_widen=True) as wide:
        assert wide
        wide_started.set()

        def narrow() -> None:
            with budget.forward(may_widen=False) as second_wide:
                assert not second_wide
            narrow_done.set()

        in_thread(narrow)
        assert not narrow_done.wait(0.2)  # no slot is free while the wide pass runs
    assert narrow_done.wait(WAIT_S)
    assert (budget.wide_passes, budget.narrow_passes) == (1, 1)


def test_company_keeps_passes_narrow_for_the_quiet_time() -> None:
    clock = Clock()
    budget = CoreBudget(2, quiet_s=0.25, clock=clock)
    with budget.job():
        with budget.job(), budget.forward(may_widen=True) as wide:
            assert not wide  # two jobs in flight
        with budget.forward(may_widen=True) as wide:
            assert not wide  # alone, but another job left a moment ago
        clock.now += 0.3
        with budget.forward(may_widen=True) as wide:
            assert wide
        with budget.forward(may_widen=False) as wide:
            assert not wide  # a pass of a batch split in several never widens


def test_a_waiting_wide_pass_narrows_when_company_arrives() -> None:
    budget = CoreBudget(2, clock=Clock())
    holding, release, lone_done = threading.Event(), threading.Event(), threading.Event()
    widths: list[bool] = []

    def holder() -> None:  # a pass outside any job (a raw tensor call) holds one of the two slots
        with budget.forward(may_widen=False):
            holding.set()
            release.wait(WAIT_S)

    def lone() -> None:
        with budget.job(), budget.forward(may_widen=True) as wide:
            widths.append(wide)
        lone_done.set()

    in_thread(holder)
    assert holding.wait(WAIT_S)
    in_thread(lone)
    assert not lone_done.wait(0.2)  # alone, so it waits for every slot
    with budget.job():  # company arrives: the waiting pass takes the free slot, the holder still running
        assert lone_done.wait(WAIT_S)
    assert widths == [False]
    release.set()


def test_slots_are_never_exceeded() -> None:
    budget = CoreBudget(3)
    busy, most, lock = [0], [0], threading.Lock()

    def hammer() -> None:
        for _ in range(200):
            with budget.forward(may_widen=False):
                with lock:
                    busy[0] += 1
                    most[0] = max(most[0], busy[0])
                time.sleep(0)
                with lock:
                    busy[0] -= 1

    threads = [in_thread(hammer) for _ in range(8)]
    for thread in threads:
        thread.join(WAIT_S * 4)
    assert most[0] == 3 and busy[0] == 0


# --- a real server ---


def counters(client: httpx.Client) -> dict[str, float]:
    values = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "visionserve_cpu_seconds_total":
                values[sample.labels["part"]] = sample.value
            elif sample.name == "visionserve_forward_passes_total":
                values[f"passes_{sample.labels['cores']}"] = sample.value
            elif sample.name == "process_cpu_seconds_total":
                values["process"] = sample.value
    return values


@pytest.fixture
def lone_server(start_server) -> Iterator[Server]:
    if available_cores() < 2:
        pytest.skip("one core: there is no wider pass to take")
    yield start_server()


def detect(client: httpx.Client, images: int = 1) -> None:
    image = image_value(photo("astronaut"))
    body = {"model_id": "nudenet/1", "image": [image] * images if images > 1 else image}
    response = client.post("/infer/object_detection", content=orjson.dumps(body),
                           headers={"Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 200, response.text


def test_lone_requests_take_every_core_and_the_cpu_is_counted(lone_server: Server) -> None:
    with lone_server.client() as client:
        detect(client)  # loads the model
        before = counters(client)
        for _ in range(3):
            detect(client)
        after = counters(client)
    assert after["passes_all"] - before["passes_all"] == 3 and after["passes_slot"] == before["passes_slot"]
    for part in ("parse", "decode", "preprocess", "inference", "postprocess", "respond", "event_loop", "process"):
        assert after[part] > before[part], part
    assert after["process"] - before["process"] >= after["inference"] - before["inference"]


def test_a_batch_runs_its_passes_side_by_side(lone_server: Server) -> None:
    with lone_server.client() as client:
        detect(client)
        before = counters(client)
        detect(client, images=4)  # two passes of two images, one per slot
        after = counters(client)
    assert after["passes_slot"] - before["passes_slot"] == 2 and after["passes_all"] == before["passes_all"]


def test_concurrent_requests_stay_narrow(lone_server: Server) -> None:
    with lone_server.client() as client:
        detect(client)
    before = counters(lone_server.client())
    errors: list[BaseException] = []

    def client_loop() -> None:
        try:
            with lone_server.client() as client:
                for _ in range(6):
                    detect(client)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [in_thread(client_loop) for _ in range(3)]
    for thread in threads:
        thread.join(120)
    after = counters(lone_server.client())
    assert not errors
    narrow = after["passes_slot"] - before["passes_slot"]
    wide = after["passes_all"] - before["passes_all"]
    assert narrow + wide == 18 and narrow >= 15  # the first pass may start before the others arrive


def test_one_session_when_lone_requests_keep_one_thread(start_server) -> None:
    server = start_server({"VISIONSERVE_LONE_REQUEST_THREADS": "1"})
    with server.client() as client:
        for _ in range(2):
            detect(client)
        assert counters(client)["passes_all"] == 0
