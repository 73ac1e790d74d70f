"""visionserve as a Ray Serve application, on a real local Ray cluster started by `visionserve ray serve` (one for
the module): the official client gets the single-process server's answers, requests are routed by model, a killed
model worker costs only retried 503s, and the KubeRay manifest names what the CLI deploys."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import ray
import yaml
from filelock import FileLock

from tests.conftest import FIXTURES, b64
from tests.test_api_detection import without_ids
from tests.test_official_sdk import official_client, ours, photos  # noqa: F401  (photos: a fixture)
from tests.test_request_bounds import raw_exchange
from visionserve.config import Settings
from visionserve.deploy.ray_process import RayServeProcess
from visionserve.deploy.ray_proxy import node_environment
from visionserve.deploy.ray_serve import RayLayout, Secrets, build_application
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore
from visionserve.server_process import port_taken

ROOT = Path(__file__).parent.parent
MANIFEST = ROOT / "deploy" / "kuberay" / "rayservice.yaml"
NUDENET = "nudenet/1"
FIXTURE_MODEL = "shapes-detect/1"
ROBOFLOW_KEY = "rf-key-that-ray-must-not-show"
HEADER_TIMEOUT_S = 3  # HAProxy's client timeout follows it
# Under `--dist loadgroup` too, every test of this module runs on one worker (one_local_ray_cluster: one at a time).
pytestmark = pytest.mark.xdist_group("ray")
ASTRONAUT = b64((ROOT / "visionserve" / "assets" / "astronaut.jpg").read_bytes())


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "visionserve", "ray", "serve", *args]


@pytest.fixture(scope="module")
def ray_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayServeProcess]:
    """Two model workers of one model each (half a CPU apiece, one ONNX thread) on a 2-CPU local cluster, small
    queues so that back-pressure shows, a store holding a fixture model next to the built-in one, and a short header
    time limit (the bound tests wait for it)."""
    home = tmp_path_factory.mktemp("ray-home")
    import_model(ModelStore(home / "models"), FIXTURES / "models" / "shapes-detect.onnx", FIXTURE_MODEL,
                 ManifestOverrides())  # fmt: skip
    env = {
        "VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning",
        "VISIONSERVE_RAY_WORKER_CPUS": "0.5", "VISIONSERVE_RAY_WORKER_MAX_ONGOING_REQUESTS": "2",
        "VISIONSERVE_RAY_MAX_QUEUED_REQUESTS": "4", "ROBOFLOW_API_KEY": ROBOFLOW_KEY,
        "VISIONSERVE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    }  # fmt: skip
    args = ("--replicas", "2", "--models-per-replica", "1", "--num-cpus", "2")
    with one_local_ray_cluster() as ray_temp:
        running = RayServeProcess(ray_temp, args, env).start()
        yield running
        running.stop()


@contextmanager
def one_local_ray_cluster() -> Iterator[Path]:
    """A Ray temp dir right under /tmp (below pytest-xdist's per-worker basetemp, Ray's socket paths pass AF_UNIX's
    107 bytes), held under a lock shared by every test process: two clusters at once on 2 cores would starve each
    other's timing-bound tests (this module's and test_ray_cluster's run on different xdist workers)."""
    with FileLock(Path(tempfile.gettempdir()) / "visionserve-tests-ray.lock"):
        with tempfile.TemporaryDirectory(prefix="ray-", ignore_cleanup_errors=True) as ray_temp:
            yield Path(ray_temp)


def detect(http: httpx.Client, model_id: str) -> httpx.Response:
    body = {"model_id": model_id, "image": {"type": "base64", "value": ASTRONAUT}}
    return http.post("/infer/object_detection", json=body)


def test_the_kuberay_manifest_deploys_what_the_cli_does() -> None:
    printed = subprocess.run(
        cli("--replicas", "2", "--models-per-replica", "4", "--host", "0.0.0.0", "--print-config"),
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    from_cli = yaml.safe_load(printed)
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["kind"] == "RayService"
    served = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    assert served == from_cli
    cluster = manifest["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"name": "serve", "containerPort": from_cli["http_options"]["port"]} in head["ports"]
    assert cluster["rayVersion"] == ray.__version__
    settings = {f"VISIONSERVE_{name.upper()}" for name in Settings.model_fields}
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        env = group["template"]["spec"]["containers"][0]["env"]
        assert {item["name"] for item in env if item["name"].startswith("VISIONSERVE_")} <= settings
        # every pod runs HAProxy in front, with the header bounds
        assert [{"name": name, "value": value} for name, value in node_environment(Settings()).items()] == [
            item for item in env if item["name"] in node_environment(Settings())
        ]


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("VISIONSERVE_RAY_WORKER_RESOURCES", "gpu-node", "VISIONSERVE_RAY_WORKER_RESOURCES is not valid JSON"),
    ("VISIONSERVE_RAY_MAX_QUEUED_REQUESTS", "-3", "VISIONSERVE_RAY_MAX_QUEUED_REQUESTS: Input should be greater"),
])  # fmt: skip
def test_a_bad_layout_variable_is_one_clear_line(variable: str, value: str, said: str) -> None:
    done = subprocess.run(cli("--print-config"), capture_output=True, text=True, timeout=60,
                          env={**os.environ, variable: value, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert said in done.stderr, done.stderr


def test_a_taken_port_is_refused_before_a_cluster_starts() -> None:
    """Under HAProxy a port already held (an HAProxy left by a killed cluster shares it through SO_REUSEPORT) would
    take half the connections to nowhere: the command refuses it, in one line, before starting Ray."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(cli("--host", "127.0.0.1", "--port", str(port)), capture_output=True, text=True,
                              timeout=60, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert f"127.0.0.1:{port} is already in use" in done.stderr, done.stderr


def test_official_client_gets_the_single_process_answers(
    ray_app: RayServeProcess,
    client: httpx.Client,
    photos: list[Path],  # noqa: F811
) -> None:
    (item,) = official_client(ray_app, NUDENET, photos[:1])["results"]  # type: ignore[arg-type]
    assert without_ids(item["result"]) == ours(client, photos[0])
    assert "FACE_FEMALE" in item["detections"]["class_name"]
    (legacy,) = official_client(ray_app, NUDENET, photos[:1], "--v0")["results"]  # type: ignore[arg-type]
    assert without_ids(legacy["result"]) == ours(client, photos[0])
    batch = official_client(
        ray_app, NUDENET, photos, "--confidence", "0.2", "--max-batch-size", "2",  # type: ignore[arg-type]
        "--max-concurrent-requests", "2",
    )["results"]  # fmt: skip
    assert [without_ids(item["result"]) for item in batch] == [ours(client, path, 0.2) for path in photos]


def test_every_route_is_served_through_ray(ray_app: RayServeProcess) -> None:
    with httpx.Client(base_url=ray_app.url, timeout=60) as http:
        assert http.get("/info").status_code == 200
        assert http.get("/docs").status_code == 200
        assert "visionserve_requests" in http.get("/metrics").text
        unknown = detect(http, "no-such/1")
        assert unknown.status_code == 404 and "no-such/1" in unknown.json()["message"]
        assert detect(http, "bad id").status_code == 400
        assert len(detect(http, NUDENET).headers.get_list("x-request-id")) == 1
        pipeline = http.post("/inference_pipelines/initialise", json={"model_id": NUDENET, "video_reference": 0})
        assert pipeline.status_code == 501 and "visionserve serve" in pipeline.json()["message"]


def forward_passes(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("visionserve_forward_passes_total{"))


def test_raw_tensors_run_on_the_model_workers(ray_app: RayServeProcess) -> None:
    """The ingress reserves no CPU: a raw /v2 tensor must not run its forward pass there (before, it did)."""
    tensor = {"name": "images", "datatype": "FP32", "shape": [1, 3, 320, 320], "data": [0.0] * (3 * 320 * 320)}
    with httpx.Client(base_url=ray_app.url, timeout=60) as http:
        before = forward_passes(http.get("/metrics").text)
        answer = http.post("/v2/models/nudenet/versions/1/infer", json={"inputs": [tensor]})
        assert answer.status_code == 200, answer.text
        (output,) = answer.json()["outputs"]
        assert output["shape"][:2] == [1, 22] and len(output["data"]) == output["shape"][1] * output["shape"][2]
        assert forward_passes(http.get("/metrics").text) == before  # the ingress ran no forward pass


def test_keys_reach_replicas_as_arguments_not_as_runtime_env() -> None:
    """Ray shows a deployment's runtime_env (dashboard, state API, `serve status`), never its arguments."""
    env = {"VISIONSERVE_HOME": "/data", "VISIONSERVE_API_KEYS": "caller-key", "ROBOFLOW_API_KEY": "rf-key",
           "VISIONSERVE_WEIGHTS_API_KEY": "weights-key", "PATH": "/bin"}  # fmt: skip
    ingress = build_application(RayLayout(), env)._bound_deployment
    workers = ingress.init_args[0]._bound_deployment
    for deployment in (ingress, workers):
        assert deployment.ray_actor_options["runtime_env"] == {"env_vars": {"VISIONSERVE_HOME": "/data"}}
        (secrets,) = [arg for arg in deployment.init_args if isinstance(arg, Secrets)]
        assert secrets.values == {"VISIONSERVE_API_KEYS": "caller-key", "ROBOFLOW_API_KEY": "rf-key",
                                  "VISIONSERVE_WEIGHTS_API_KEY": "weights-key"}  # fmt: skip
        assert "key" not in repr(secrets).replace("Secrets", "")


def test_the_dashboard_does_not_show_the_keys(ray_app: RayServeProcess) -> None:
    """Before: the Serve API and the state API showed ROBOFLOW_API_KEY among each replica's runtime_env variables."""
    dashboard = re.search(r"dashboard at .*?(http://[\d.]+:\d+)", ray_app.log())
    assert dashboard, ray_app.log()
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()  # Ray's own dashboard token
    with httpx.Client(base_url=dashboard[1], headers={"Authorization": f"Bearer {token}"}, timeout=30) as ray_api:
        for path in ("/api/serve/applications/", "/api/v0/actors?detail=1"):
            shown = ray_api.get(path)
            assert shown.status_code == 200 and "VISIONSERVE_HOME" in shown.text, path  # the settings are there...
            assert ROBOFLOW_KEY not in shown.text, path  # ...the key is not


def test_the_proxy_keeps_the_header_bounds(ray_app: RayServeProcess) -> None:
    """HAProxy and the ingress replica read the headers, so together they must refuse a huge header line and cut a
    connection that never finishes them, as `visionserve serve` does: a little over the bound, visionserve's 431
    and message (from the replica); far over it, HAProxy's own 400 once its buffer is full, without reading on."""
    over = Settings().max_header_bytes + 4096
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "  # closed once answered
    answer = raw_exchange(ray_app, start + b"a" * over + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431") and b"VISIONSERVE_MAX_HEADER_BYTES" in answer
    assert raw_exchange(ray_app, start + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n").startswith(b"HTTP/1.1 400")
    started = time.monotonic()
    answer = raw_exchange(ray_app, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a", wait_s=30)
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 2 * HEADER_TIMEOUT_S
    assert httpx.get(f"{ray_app.url}/healthz", timeout=30).status_code == 200


def test_requests_go_to_the_replica_holding_their_model(ray_app: RayServeProcess) -> None:
    """Two replicas of one model each, two models: alternating requests load each model once, not every time."""
    before = set(ray_app.loads())
    with httpx.Client(base_url=ray_app.url, timeout=60) as http:
        for index in range(40):
            response = detect(http, (NUDENET, FIXTURE_MODEL)[index % 2])
            assert response.status_code == 200, response.text
    time.sleep(0.5)  # the last log lines reach the files
    new_loads = [load for load in ray_app.loads() if load not in before]
    assert len(new_loads) <= 2, new_loads
    print(f"\n40 alternating requests, 2 replicas x 1 model: {len(new_loads)} model loads {new_loads}")


def test_a_job_over_grpcs_default_message_size_crosses_to_the_worker(ray_app: RayServeProcess) -> None:
    """The ingress calls the workers over gRPC, whose replicas take 4 MiB messages unless told otherwise: a request
    the HTTP limits accept must reach a worker whatever its size (an image of 6 MiB as base64, and 20 MiB that is no
    image), and get the answer the single process gives, not a 500."""
    noise = np.random.default_rng(0).integers(0, 256, (1100, 1500, 3), dtype=np.uint8)
    png = cv2.imencode(".png", noise)[1].tobytes()
    assert len(b64(png)) > 4 * 1024 * 1024
    with httpx.Client(base_url=ray_app.url, timeout=120) as http:
        image = {"model_id": NUDENET, "image": {"type": "base64", "value": b64(png)}}
        answer = http.post("/infer/object_detection", json=image)
        assert answer.status_code == 200, answer.text
        assert answer.json()["image"] == {"width": 1500, "height": 1100}
        no_image = {"model_id": NUDENET, "image": {"type": "base64", "value": "A" * (20 * 1024 * 1024)}}
        answer = http.post("/infer/object_detection", json=no_image)
        assert answer.status_code == 400 and "not an image" in answer.json()["message"], answer.text


def test_beyond_capacity_callers_get_503_with_retry_after(ray_app: RayServeProcess) -> None:
    with httpx.Client(base_url=ray_app.url, timeout=60) as http, ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(lambda _: detect(http, NUDENET), range(48)))
    statuses = {response.status_code for response in responses}
    assert statuses <= {200, 503} and 503 in statuses and 200 in statuses
    refused = [response for response in responses if response.status_code == 503]
    assert all(response.headers["Retry-After"] == "1" for response in refused)
    print(f"\n48 requests, 24 at once: {len(refused)} got 503 with Retry-After")


def with_retries(http: httpx.Client, model_id: str) -> tuple[int, int]:
    """The final status and how many retries it took, retrying 503s after their Retry-After, as clients do."""
    for retries in range(30):
        response = detect(http, model_id)
        if response.status_code != 503:
            return response.status_code, retries
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return 503, 30


def test_a_killed_worker_costs_only_retries(ray_app: RayServeProcess) -> None:
    with httpx.Client(base_url=ray_app.url, timeout=60) as http:
        assert detect(http, NUDENET).status_code == 200
        workers_before = ray_app.worker_logs()
        victim = [load for load in ray_app.loads() if load.model_id == NUDENET][-1]
        with ThreadPoolExecutor(4) as pool:
            outcomes = [pool.submit(with_retries, http, NUDENET) for _ in range(50)]
            while sum(outcome.done() for outcome in outcomes) < 10:
                time.sleep(0.05)
            os.kill(victim.pid, signal.SIGKILL)
            results = [outcome.result() for outcome in outcomes]
        assert [status for status, _ in results] == [200] * 50
        retried = sum(retries > 0 for _, retries in results)
        print(f"\nworker pid {victim.pid} killed during 50 requests: {retried} needed a retry, all got 200")
        deadline = time.monotonic() + 60
        while not ray_app.worker_logs() - workers_before:  # Ray starts a replacement replica
            assert time.monotonic() < deadline, "the killed replica was not replaced"
            time.sleep(0.5)
        assert [with_retries(http, FIXTURE_MODEL)[0] for _ in range(4)] == [200] * 4


def test_sigterm_answers_the_request_in_flight_then_stops_in_seconds(ray_app: RayServeProcess) -> None:
    """The last test of the module: it stops the cluster. SIGTERM (as Ctrl-C) while a request of 24 images is in
    the workers: the request is answered in full, then the command, Ray's processes and its HAProxy end (the port is
    free again) well before Ray's default 30 s drain of an ingress replica would let them."""
    assert ray_app.process is not None
    body = {"model_id": NUDENET, "image": [{"type": "base64", "value": ASTRONAUT}] * 24}
    with httpx.Client(base_url=ray_app.url, timeout=60) as http, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(http.post, "/infer/object_detection", json=body)
        time.sleep(0.5)  # the request reaches a worker; 24 images take it over a second
        assert not in_flight.done()
        stopping = time.monotonic()
        ray_app.process.terminate()
        answer = in_flight.result()
    assert answer.status_code == 200 and len(answer.json()) == 24, answer.text
    assert ray_app.process.wait(timeout=60) == 0
    stopped_s = time.monotonic() - stopping
    assert stopped_s < 20, f"the command took {stopped_s:.1f} s to stop"
    assert not port_taken("127.0.0.1", ray_app.port)
    print(f"\nSIGTERM with a request in flight: answered, the local cluster stopped in {stopped_s:.1f} s")
