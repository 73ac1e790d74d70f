"""How the server turns cores into threads: the thread plan for any machine size, the container quota it reads,
the core budget that lets a lone request widen its forward pass (and keeps passes narrow under load), and the
same seen from outside through a real server's `/metrics`.

The budget tests use real threads and a hand-moved clock, so the hysteresis is exact; every wait has a timeout
so a broken budget fails a test instead of hanging the suite.
"""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FIXTURES, Server
from visionserve.runtime.cores import CoreBudget
from visionserve.runtime.threads import _cgroup_cpu_limit, available_cores, plan_threads

WAIT_S = 5.0  # no single step here should take this long
BLOCKED_S = 0.2  # how long a pass must stay blocked to count as "waiting"


# --- the thread plan ---


def plan_tuple(cores: int, **explicit: int) -> tuple[int, int, int, int]:
    """(run_threads, concurrent_runs, lone_threads, worker_threads): the four numbers the README's table shows."""
    plan = plan_threads(cores, **explicit)
    return plan.run_threads, plan.concurrent_runs, plan.lone_threads, plan.worker_threads


@pytest.mark.parametrize(
    ("cores", "expected"),
    [
        (1, (1, 1, 1, 4)),  # one pass, nothing wider to take; still 4 workers to read and decode ahead
        (2, (1, 2, 2, 4)),  # this project's machines: two single-thread passes, a lone request takes both
        (8, (1, 8, 8, 16)),
        (64, (4, 16, 16, 32)),  # past 16 side by side, passes get more threads instead; lone capped at 16
    ],
)
def test_default_plans(cores: int, expected: tuple[int, int, int, int]) -> None:
    assert plan_tuple(cores) == expected
    assert plan_threads(cores).cores == cores


def test_explicit_values_win() -> None:
    assert plan_tuple(2, concurrent_runs=1) == (2, 1, 2, 4)  # one pass over both cores
    assert plan_tuple(8, run_threads=2) == (2, 4, 8, 8)  # the runs fill the cores, the lone pass still all 8
    assert plan_tuple(8, lone_threads=4)[2] == 4
    assert plan_tuple(8, worker_threads=3)[3] == 3
    assert plan_tuple(8, run_threads=1, concurrent_runs=3, lone_threads=2, worker_threads=5) == (1, 3, 2, 5)


def test_worker_processes_share_the_cores() -> None:
    """`serve --workers 2` on 8 cores: each process plans exactly as a 4-core machine would."""
    assert plan_threads(8, processes=2) == plan_threads(4)
    assert plan_tuple(8, processes=2) == (1, 4, 4, 8)
    assert plan_threads(2, processes=4).cores == 1  # more processes than cores: still one core each, not zero


def test_lone_pass_never_has_fewer_threads_than_a_loaded_pass() -> None:
    """A lone request must never be slower than one under load: lone_threads is raised to run_threads."""
    for cores in range(1, 33):
        for run_threads in range(9):
            for lone_threads in range(5):
                plan = plan_threads(cores, run_threads=run_threads, lone_threads=lone_threads)
                assert plan.lone_threads >= plan.run_threads, (cores, run_threads, lone_threads)
    assert plan_tuple(8, run_threads=4, lone_threads=1)[2] == 4


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_no_default_plan_has_more_busy_threads_than_cores(processes: int) -> None:
    for cores in range(1, 129):
        plan = plan_threads(cores, processes=processes)
        assert plan.cores * processes <= max(cores, processes), (cores, processes)
        assert plan.run_threads * plan.concurrent_runs <= plan.cores, (cores, processes, plan)
        assert plan.run_threads <= plan.lone_threads <= max(plan.cores, plan.run_threads)
        assert plan.concurrent_runs <= 16
        assert plan.worker_threads >= max(4, plan.concurrent_runs)  # every pass has a thread to feed it


def test_explicit_concurrent_runs_do_not_oversubscribe() -> None:
    """Past 16 passes the default gives each pass more threads; passes the operator asked for get the cores' share."""
    for runs in (17, 32, 64):
        plan = plan_threads(64, concurrent_runs=runs)
        assert plan.run_threads * plan.concurrent_runs <= 64, runs


# --- the container's CPU quota ---


def cgroup_v2(root: Path, cpu_max: str) -> Path:
    """A folder laid out like a cgroup v2 mount: one `cpu.max` holding "<quota|max> <period>"."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cpu.max").write_text(cpu_max + "\n")
    return root


def cgroup_v1(root: Path, quota_us: int, period_us: int = 100_000) -> Path:
    """A folder laid out like a cgroup v1 mount: `cpu/cpu.cfs_quota_us` (-1: no quota) and the period."""
    (root / "cpu").mkdir(parents=True, exist_ok=True)
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period_us}\n")
    return root


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    assert _cgroup_cpu_limit(cgroup_v2(tmp_path / "unlimited", "max 100000")) is None
    assert _cgroup_cpu_limit(cgroup_v2(tmp_path / "limited", "150000 100000")) == 1.5


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    assert _cgroup_cpu_limit(cgroup_v1(tmp_path / "unlimited", -1)) is None
    assert _cgroup_cpu_limit(cgroup_v1(tmp_path / "limited", 200_000)) == 2.0
    assert _cgroup_cpu_limit(cgroup_v1(tmp_path / "no-period", 200_000, period_us=0)) is None


def test_no_or_unreadable_cgroup_files(tmp_path: Path) -> None:
    assert _cgroup_cpu_limit(tmp_path / "absent") is None
    # a v2 file that cannot be parsed does not hide a v1 quota beside it
    broken = cgroup_v1(cgroup_v2(tmp_path / "broken", "garbage"), 300_000)
    assert _cgroup_cpu_limit(broken) == 3.0
    assert available_cores() >= 1


# --- the core budget, with real threads ---


class Clock:
    """A monotonic clock that only the test moves, so `quiet_s` is crossed exactly when the test says."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Background:
    """A daemon thread whose exception is re-raised by `join`, so an assertion inside it fails the test."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread by join()
            self.error = error

    def join(self, timeout_s: float = WAIT_S) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "thread still blocked: the budget never let it through"
        if self.error is not None:
            raise self.error


class Gate:
    """Another party inside the budget until released: a job in flight (`job`), and/or a pass holding cores
    (`pass_may_widen`: None for no pass, False for a one-slot pass, True for a pass that widens if alone)."""

    def __init__(self, budget: CoreBudget, job: bool = True, pass_may_widen: bool | None = None) -> None:
        self.inside, self.release, self.outside = threading.Event(), threading.Event(), threading.Event()
        self.widths: list[bool] = []

        def hold() -> None:
            try:
                with budget.job() if job else nullcontext():
                    if pass_may_widen is None:
                        self._stay()
                        return
                    with budget.forward(pass_may_widen) as wide:
                        self.widths.append(wide)
                        self._stay()
            finally:
                self.outside.set()

        self.worker = Background(hold)
        assert self.inside.wait(WAIT_S), "the gate never got in"

    def _stay(self) -> None:
        self.inside.set()
        assert self.release.wait(WAIT_S)

    def leave(self) -> None:
        self.release.set()
        self.worker.join()


def test_a_lone_job_widens_and_holds_every_slot() -> None:
    budget = CoreBudget(2, clock=Clock())
    order: list[str] = []
    wide_inside, narrow_inside, release = threading.Event(), threading.Event(), threading.Event()

    def lone() -> None:
        with budget.job(), budget.forward(may_widen=True) as wide:
            assert wide
            order.append("wide in")
            wide_inside.set()
            assert release.wait(WAIT_S)
            order.append("wide out")

    def narrow() -> None:
        with budget.forward(may_widen=False) as wide:
            assert not wide
            order.append("narrow in")
            narrow_inside.set()

    lone_thread = Background(lone)
    assert wide_inside.wait(WAIT_S)
    narrow_thread = Background(narrow)
    # one slot of two is nominally free, but the wide pass holds both
    assert not narrow_inside.wait(BLOCKED_S)
    release.set()
    lone_thread.join()
    narrow_thread.join()
    assert order == ["wide in", "wide out", "narrow in"]
    assert (budget.wide_passes, budget.narrow_passes) == (1, 1)


def test_two_jobs_in_flight_run_narrow_passes_side_by_side() -> None:
    budget = CoreBudget(2, clock=Clock())
    other = Gate(budget, pass_may_widen=False)  # a second job, in a one-slot pass
    with budget.job(), budget.forward(may_widen=True) as wide:
        assert not wide
        assert not other.outside.is_set()  # it got the free slot while the other pass still runs
    other.leave()
    assert (budget.wide_passes, budget.narrow_passes) == (0, 2)


def test_two_jobs_between_passes_keep_each_other_narrow() -> None:
    clock = Clock()
    budget = CoreBudget(2, quiet_s=0.25, clock=clock)
    other = Gate(budget)  # a job in flight, between passes (decoding, answering)
    with budget.job():
        clock.now += 1000  # however long they have shared the server: company is company
        for _ in range(3):
            with budget.forward(may_widen=True) as wide:
                assert not wide
    other.leave()
    assert (budget.wide_passes, budget.narrow_passes) == (0, 3)


def test_company_keeps_passes_narrow_for_the_quiet_time_after_it_leaves() -> None:
    """Under load there are instants with one job in flight; widening then would serialise the server, so a
    job widens only once no other job has shared the server for `quiet_s`, counted from when the sharing ended."""
    clock = Clock(100.0)
    budget = CoreBudget(2, quiet_s=0.25, clock=clock)
    with budget.job():
        other = Gate(budget)
        clock.now = 110.0  # a long overlap: what counts is when it ends, not when it began
        other.leave()
        for now in (110.0, 110.1, 110.24):
            clock.now = now
            with budget.forward(may_widen=True) as wide:
                assert not wide, now
        clock.now = 110.25
        with budget.forward(may_widen=True) as wide:
            assert wide
    assert (budget.wide_passes, budget.narrow_passes) == (1, 3)


def test_a_budget_never_shared_widens_at_once() -> None:
    budget = CoreBudget(4, quiet_s=1000.0, clock=Clock())
    with budget.job(), budget.forward(may_widen=True) as wide:
        assert wide


def test_may_widen_false_never_widens() -> None:
    """A pass of a batch split into several chunks runs beside its siblings: it never takes every core."""
    clock = Clock()
    budget = CoreBudget(2, quiet_s=0.25, clock=clock)
    with budget.forward(may_widen=False) as wide:
        assert not wide  # no job at all
    with budget.job():
        clock.now += 1000
        with budget.forward(may_widen=False) as wide:
            assert not wide  # alone, long quiet
    assert (budget.wide_passes, budget.narrow_passes) == (0, 2)


def test_a_lone_pass_that_finds_a_slot_busy_runs_narrow_at_once() -> None:
    """A one-slot pass outside any job (before raw tensor calls joined jobs, they starved lone jobs waiting to
    widen): the lone job takes the free slot now, rather than wait for every slot."""
    budget = CoreBudget(2, clock=Clock())
    holder = Gate(budget, job=False, pass_may_widen=False)
    widths: list[bool] = []
    Background(lambda: _lone_pass(budget, widths)).join()
    assert widths == [False]
    assert not holder.outside.is_set()  # it did not wait for the holder's pass to end
    holder.leave()
    assert (budget.wide_passes, budget.narrow_passes) == (0, 2)


def test_passes_outside_jobs_never_starve_a_lone_job() -> None:
    budget = CoreBudget(2, clock=Clock())
    stop = threading.Event()

    def hammer() -> None:  # back-to-back one-slot passes, as raw tensor calls from several clients
        while not stop.is_set():
            with budget.forward(may_widen=False):
                time.sleep(0.005)

    hammers = [Background(hammer) for _ in range(3)]
    widths: list[bool] = []
    try:
        Background(lambda: _lone_pass(budget, widths)).join(2.0)
    finally:
        stop.set()
        for worker in hammers:
            worker.join()
    assert widths == [False]


def _lone_pass(budget: CoreBudget, widths: list[bool]) -> None:
    """One job alone with one pass that may widen; records whether it did."""
    with budget.job(), budget.forward(may_widen=True) as wide:
        widths.append(wide)


def test_slots_are_never_exceeded() -> None:
    """Narrow passes from many threads, and lone jobs' wide passes among them: the cores in use (1 per narrow
    pass, every slot for a wide one) never exceed the slots, and every slot does get used."""
    slots = 3
    budget = CoreBudget(slots, quiet_s=0.0)  # real clock: a job widens whenever it is alone
    lock = threading.Lock()
    in_use, peak, narrow_peak = [0], [0], [0]
    rounds = 60

    def enter(cores: int, wide: bool) -> None:
        with lock:
            in_use[0] += cores
            peak[0] = max(peak[0], in_use[0])
            if not wide:
                narrow_peak[0] = max(narrow_peak[0], in_use[0])

    def leave(cores: int) -> None:
        with lock:
            in_use[0] -= cores

    def narrow_hammer() -> None:
        for _ in range(rounds):
            with budget.forward(may_widen=False) as wide:
                assert not wide
                enter(1, wide)
                time.sleep(0.0005)
                leave(1)

    def job_hammer() -> None:
        for _ in range(rounds):
            with budget.job(), budget.forward(may_widen=True) as wide:
                cores = slots if wide else 1
                enter(cores, wide)
                time.sleep(0.0005)
                leave(cores)

    workers = [Background(narrow_hammer) for _ in range(6)] + [Background(job_hammer) for _ in range(2)]
    for worker in workers:
        worker.join(WAIT_S * 4)
    assert in_use[0] == 0
    assert peak[0] == slots
    assert narrow_peak[0] == slots  # narrow passes alone fill every slot, and no more
    assert budget.wide_passes + budget.narrow_passes == 8 * rounds


# --- a real server ---


def jpeg_value(name: str = "detect_0.jpg") -> dict[str, str]:
    """A real JPEG from the fixtures, as the base64 image value of an inference body."""
    return {"type": "base64", "value": base64.b64encode((FIXTURES / "images" / name).read_bytes()).decode()}


def detect(client: httpx.Client, images: int = 1) -> list[dict]:
    """One object-detection request with the built-in model; its answers, one per image."""
    names = [f"detect_{index}.jpg" for index in range(images)]
    image = [jpeg_value(name) for name in names] if images > 1 else jpeg_value(names[0])
    response = client.post(
        "/infer/object_detection",
        content=orjson.dumps({"model_id": "nudenet/1", "image": image}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    answers = response.json()
    return answers if isinstance(answers, list) else [answers]


def counters(client: httpx.Client) -> dict[str, float]:
    """The CPU and forward-pass counters of `/metrics`: "cpu:<part>", "passes:<all|slot>" and "process"."""
    response = client.get("/metrics")
    assert response.status_code == 200
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "visionserve_cpu_seconds_total":
                values[f"cpu:{sample.labels['part']}"] = sample.value
            elif sample.name == "visionserve_forward_passes_total":
                values[f"passes:{sample.labels['cores']}"] = sample.value
            elif sample.name == "process_cpu_seconds_total":
                values["process"] = sample.value
    return values


def grown(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture(scope="module")
def lone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with default settings, on a machine where a lone request has more than one core to take."""
    if available_cores() < 2:
        pytest.skip("only one core: a lone request has no wider pass to take, so there is no second session")
    running = Server(tmp_path_factory.mktemp("lone-home")).start()
    with running.client() as client:
        detect(client)  # loads the model, so the tests below count only their own requests
    yield running
    running.stop()


def test_lone_requests_take_every_core_and_cpu_is_counted_by_part(lone_server: Server) -> None:
    requests = 3
    with lone_server.client() as client:
        before = counters(client)
        for _ in range(requests):
            assert detect(client)[0]["predictions"] is not None
        after = counters(client)
    assert grown(before, after, "passes:all") == requests  # sequential single images: every pass is lone
    assert grown(before, after, "passes:slot") == 0
    for part in ("parse", "decode", "preprocess", "inference", "postprocess", "respond", "event_loop"):
        assert f"cpu:{part}" in after, f"no visionserve_cpu_seconds_total{{part={part!r}}}"
        assert grown(before, after, f"cpu:{part}") > 0, part
    assert "process" in before and "process" in after
    stage_cpu = sum(grown(before, after, key) for key in after if key.startswith("cpu:"))
    # the parts are disjoint threads' CPU time, so together they cannot exceed the whole process's
    # (process_cpu_seconds_total has 10 ms resolution: allow for one tick)
    assert grown(before, after, "process") + 0.011 >= stage_cpu > 0


def test_a_batch_runs_its_passes_side_by_side(lone_server: Server) -> None:
    """Four images are split into chunks, one per slot, that run together: none of them may take every core."""
    slots = plan_threads(available_cores()).concurrent_runs
    chunk = math.ceil(4 / slots)
    with lone_server.client() as client:
        before = counters(client)
        answers = detect(client, images=4)
        after = counters(client)
    assert len(answers) == 4
    assert grown(before, after, "passes:slot") == len(range(0, 4, chunk)) >= 2
    assert grown(before, after, "passes:all") == 0


def test_one_session_when_lone_requests_keep_one_thread(tmp_path: Path) -> None:
    """`VISIONSERVE_LONE_REQUEST_THREADS=1` equals the loaded pass's threads: no second session, no wide pass."""
    server = Server(tmp_path / "home", {"VISIONSERVE_LONE_REQUEST_THREADS": "1"}).start()
    try:
        with server.client() as client:
            detect(client)
            before = counters(client)
            for _ in range(2):
                detect(client)
            after = counters(client)
    finally:
        server.stop()
    assert after["passes:all"] == 0
    assert grown(before, after, "passes:slot") == 2


def test_concurrent_clients_keep_passes_narrow(lone_server: Server) -> None:
    """Three clients back to back: the instants with one request in flight do not make passes wide."""
    with lone_server.client() as client:
        before = counters(client)

    def client_loop() -> None:
        with lone_server.client() as client:
            for _ in range(6):
                detect(client)

    workers = [Background(client_loop) for _ in range(3)]
    for worker in workers:
        worker.join(120)
    with lone_server.client() as client:
        after = counters(client)
    narrow, wide = grown(before, after, "passes:slot"), grown(before, after, "passes:all")
    assert narrow + wide == 18
    assert narrow >= 16  # the first pass may start before the other clients arrive
