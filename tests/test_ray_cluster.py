"""visionserve on a two-node Ray cluster on this machine: a head and a worker node, each started by its own
`ray start --node-ip-address 127.0.0.1` (Ray 2.60 registers the machine's own address for both), with its own model
store (VISIONSERVE_HOME in that node's environment, not in the deploying one). The head offers the ingress and two
model workers, the worker node one model worker and its own HTTP proxy. Both nodes serve, each node fetches the model
from the weights API once (the head's two workers share its store), and killing every process of the worker node
during a stream of requests loses none of them."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from benchmarks.ray_bench import process_tree
from tests.fake_weights_api import CatalogModel, FakeWeightsApi, environment
from tests.test_api_detection import without_ids
from tests.test_ray_serve import ASTRONAUT, one_local_ray_cluster
from visionserve.cli.running_servers import kernel_start_time
from visionserve.config import Settings
from visionserve.deploy.ray_proxy import node_environment
from visionserve.deploy.ray_serve import ModelLoad, model_loads
from visionserve.models.builtin import BuiltinModels
from visionserve.models.store import ModelStore
from visionserve.server_process import free_port

RAY = str(Path(sys.executable).parent / "ray")
MODEL = "remote-detect/1"  # known to the fake weights API only: every node has to fetch it
RETRIES = 20  # 503s a client retries (after their Retry-After) before the request counts as lost
pytestmark = pytest.mark.xdist_group("ray")


@dataclass
class Node:
    """One `ray start --block` in a session of its own, and every process under it (raylet, workers, agents)."""

    name: str
    temp: Path
    home: Path
    process: subprocess.Popen[bytes] | None = None
    pids: set[int] = field(default_factory=set)  # every process of this node seen so far

    def start(self, args: list[str], env: dict[str, str]) -> None:
        self.temp.mkdir(parents=True)
        node_env = {**env, "VISIONSERVE_HOME": str(self.home), "RAY_TMPDIR": str(self.temp)}
        ports = ["--node-manager-port", "--object-manager-port", "--metrics-export-port",
                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port"]
        fresh = [str(part) for option in ports for part in (option, free_port())]
        command = [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--temp-dir", str(self.temp),
                   "--disable-usage-stats", *fresh, *args]  # fmt: skip
        with (self.temp / "ray-start.log").open("wb") as log:
            self.process = subprocess.Popen(command, env=node_env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def tree(self) -> dict[int, tuple[float, str]]:
        """This node's live processes (pid: CPU seconds so far, command line), as descendants of its `ray start`."""
        assert self.process is not None
        live = process_tree(self.process.pid)
        self.pids |= live.keys()
        return live

    def processes(self) -> dict[int, str]:
        return {pid: command for pid, (_, command) in self.tree().items()}

    def loads(self) -> list[ModelLoad]:
        return model_loads(self.temp / "session_latest")

    def kill(self) -> None:
        """SIGKILL for every process of the node at once, as a machine that dies; then its session's group."""
        for pid in self.processes():
            with suppress(ProcessLookupError):  # exited already
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            with suppress(ProcessLookupError):  # exited already
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM to `ray start`, which stops its processes in order; whatever is left after 5 s is killed. (A head
        node's `ray start --block` stops its GCS, then asks the GCS to drain the node and waits 30 s for an answer:
        Ray 2.60's own order, which only delays the end.)"""
        assert self.process is not None
        self.processes()
        with suppress(ProcessLookupError):  # exited already
            self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for pid in self.alive():
            with suppress(ProcessLookupError):  # exited already
                os.kill(pid, signal.SIGKILL)

    def alive(self) -> set[int]:
        """Those of its processes still running: a zombie (killed, its exit not yet collected by whichever process
        adopted it) has ended and holds nothing but its pid."""
        return {pid for pid in self.pids if kernel_start_time(pid) is not None}


@dataclass
class Cluster:
    head: Node
    worker: Node
    api: FakeWeightsApi
    head_url: str
    worker_url: str  # the worker node's own Ray HTTP proxy


def wait_for(what: str, check, timeout_s: float, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s:\n{log.read_text(errors='replace')}")
        time.sleep(0.5)


def serves(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readiness", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    package = BuiltinModels().find("nudenet/1")
    classes = package.manifest.class_names
    api = FakeWeightsApi({MODEL: CatalogModel(package.weights_path.read_bytes(), environment(classes), classes)})
    homes = tmp_path_factory.mktemp("ray-cluster")
    with one_local_ray_cluster() as temp:
        yield from started_cluster(Node("head", temp / "head", homes / "head-home"),
                                   Node("worker", temp / "worker", homes / "worker-home"), api)  # fmt: skip


def started_cluster(head: Node, worker: Node, api: FakeWeightsApi) -> Iterator[Cluster]:
    base = {name: value for name, value in os.environ.items() if not name.startswith(("VISIONSERVE_", "RAY_"))}
    # `ray start --head` turns Ray's token authentication on (Ray 2.60): every node and the deploying driver share
    # one token, as a real cluster's processes would.
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # Ray's Python proxy, not HAProxy: Ray gives a worker node's Python proxy a port of its own
    # (RAY_SERVE_WORKER_PROXY_HTTP_PORT), while each node's HAProxy takes the one HTTP port, which two nodes on one
    # machine cannot both have. test_ray_serve runs HAProxy.
    node_env = {**base, **token, "RAY_USAGE_STATS_ENABLED": "0", **node_environment(Settings(), haproxy=False)}
    gcs, head_http, worker_http = free_port(), free_port(), free_port()
    try:
        head.start(["--head", "--port", str(gcs), "--num-cpus", "2", "--include-dashboard", "false",
                    "--ray-client-server-port", str(free_port()),
                    "--resources", json.dumps({"vs-ingress": 1, "vs-models": 2})], node_env)  # fmt: skip
        worker.start(["--address", f"127.0.0.1:{gcs}", "--num-cpus", "1", "--resources", json.dumps({"vs-models": 1})],
                     {**node_env, "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(worker_http)})  # fmt: skip
        deploy_env = {
            **base, **token, "RAY_USAGE_STATS_ENABLED": "0", "VISIONSERVE_WEIGHTS_API": api.url,
            "VISIONSERVE_LOG_LEVEL": "warning", "VISIONSERVE_RAY_WORKER_CPUS": "0",
            "VISIONSERVE_RAY_WORKER_RESOURCES": json.dumps({"vs-models": 1}),
            "VISIONSERVE_RAY_INGRESS_RESOURCES": json.dumps({"vs-ingress": 1}),
            "VISIONSERVE_RAY_WORKER_MAX_ONGOING_REQUESTS": "1",  # a busy worker: the next one gets the model too
        }  # fmt: skip
        deploy = [sys.executable, "-m", "visionserve", "ray", "serve", "--address", f"127.0.0.1:{gcs}",
                  "--host", "127.0.0.1", "--port", str(head_http), "--replicas", "3", "--models-per-replica", "1"]
        deployed = subprocess.run(deploy, env=deploy_env, capture_output=True, text=True, timeout=240)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        head_url, worker_url = f"http://127.0.0.1:{head_http}", f"http://127.0.0.1:{worker_http}"
        wait_for("the worker node's proxy serving", lambda: serves(worker_url), 60, worker.temp / "ray-start.log")
        yield Cluster(head, worker, api, head_url, worker_url)
    finally:
        for node in (worker, head):
            if node.process is not None:
                node.stop()
        api.close()


def detect(http: httpx.Client, url: str) -> httpx.Response:
    return http.post(f"{url}/infer/object_detection",
                     json={"model_id": MODEL, "image": {"type": "base64", "value": ASTRONAUT}})  # fmt: skip


def model_worker_cpu_s(node: Node) -> float:
    """CPU seconds so far of the node's model-worker replicas."""
    return sum(seconds for seconds, command in node.tree().values() if "ModelWorker" in command)


def test_both_nodes_serve_and_each_fetches_the_model_once(cluster: Cluster) -> None:
    with httpx.Client(timeout=120) as http, ThreadPoolExecutor(6) as pool:
        first = detect(http, cluster.head_url)
        assert first.status_code == 200, first.text
        cpu_before = {node.name: model_worker_cpu_s(node) for node in (cluster.head, cluster.worker)}
        # Six at once against workers taking one job each: every worker gets some, so every one loads the model.
        urls = [(cluster.head_url, cluster.worker_url)[index % 2] for index in range(36)]
        answers = list(pool.map(lambda url: detect(http, url), urls))
        cpu_after = {node.name: model_worker_cpu_s(node) for node in (cluster.head, cluster.worker)}
    assert [answer.status_code for answer in answers] == [200] * 36  # through both nodes' proxies
    assert all(without_ids(answer.json()) == without_ids(first.json()) for answer in answers)
    time.sleep(0.5)  # the last log lines reach the files
    loads = {node.name: node.loads() for node in (cluster.head, cluster.worker)}
    assert len({load.pid for load in loads["head"]}) == 2 and len(loads["worker"]) == 1, loads
    assert {load.pid for load in loads["worker"]} <= cluster.worker.pids  # the worker node's own replica
    worked = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
    assert worked["worker"] > 0.2 and worked["head"] > 0.2, worked  # both nodes ran forward passes (~30 ms each)
    assert cluster.api.count(f"download {MODEL}") == 2  # once per node, not once per replica
    for node in (cluster.head, cluster.worker):
        assert ModelStore(node.home / "models").find(MODEL) is not None, node.name
    print(f"\n3 workers on 2 nodes loaded the model, 2 downloads; worker CPU s during 36 requests: {worked}")


def with_retries(http: httpx.Client, url: str, expected: object) -> tuple[str, int]:
    """"ok" for a 200 with the expected detections, after at most RETRIES retried 503s (as the official client
    retries them); anything else (another status, a wrong answer, a connection error, a timeout) is "lost"."""
    for retries in range(RETRIES + 1):
        try:
            response = detect(http, url)
        except httpx.HTTPError as error:
            return f"lost: {type(error).__name__}", retries
        if response.status_code != 503:
            good = response.status_code == 200 and without_ids(response.json()) == expected
            return ("ok" if good else f"lost: {response.status_code} {response.text[:200]}"), retries
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return "lost: 503 after every retry", RETRIES


def test_killing_the_worker_node_loses_no_request(cluster: Cluster) -> None:
    with httpx.Client(timeout=60) as http:
        expected = without_ids(detect(http, cluster.head_url).json())
        outcomes: list[tuple[str, int]] = []
        killed = threading.Event()
        after_kill = 0

        def client() -> None:
            nonlocal after_kill
            while after_kill < 24:
                outcome = with_retries(http, cluster.head_url, expected)
                outcomes.append(outcome)
                after_kill += killed.is_set()

        with ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(client) for _ in range(4)]
            while len(outcomes) < 12:
                time.sleep(0.05)
            victims = cluster.worker.processes()
            assert any("ModelWorker" in command for command in victims.values())  # its replica is running
            cluster.worker.kill()
            killed.set()
            for running in clients:
                running.result(timeout=240)
    assert not cluster.worker.alive()  # every process the worker node had is gone
    lost = [outcome for outcome, _ in outcomes if outcome != "ok"]
    assert not lost, lost
    retried = sum(retries > 0 for _, retries in outcomes)
    print(f"\nworker node ({len(victims)} processes) killed during {len(outcomes)} requests: "
          f"{retried} needed a retry, none lost")  # fmt: skip
