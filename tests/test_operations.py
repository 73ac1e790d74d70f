"""Running in the open: API keys, locked-down model management, CORS, request ids, logs, metrics, back-pressure,
deadlines, clients that leave, and graceful shutdown."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, encode, image_value, photo

KEYS = ("key-one", "key-two")


def body(model_id: str = "nudenet/1", **extra: object) -> dict:
    return {"model_id": model_id, "image": image_value(photo("coins")), **extra}


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("locked")
    keys_file = home / "keys.txt"
    keys_file.write_text("# one key a line\nkey-one\n\nkey-two\n")
    server = Server(home, {"VISIONSERVE_API_KEYS": str(keys_file), "VISIONSERVE_DOCS_PUBLIC": "0"}).start()
    yield server
    server.stop()


ROUTE_GROUPS = [
    ("POST", "/infer/object_detection", lambda: {"json": body()}),
    ("POST", "/infer/classification", lambda: {"json": body()}),
    ("POST", "/nudenet/1", lambda: {"content": encode(photo("coins")), "headers": {"Content-Type": "image/jpeg"}}),
    ("GET", "/model/registry", dict),
    ("POST", "/model/add", lambda: {"json": {"model_id": "nudenet/1"}}),
    ("POST", "/model/remove", lambda: {"json": {"model_id": "nudenet/1"}}),
    ("POST", "/model/clear", dict),
    ("GET", "/docs", dict),
    ("GET", "/openapi.json", dict),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), ROUTE_GROUPS)
def test_every_route_group_needs_a_key(locked: Server, method: str, path: str, kwargs) -> None:
    with locked.client() as http:
        missing = http.request(method, path, **kwargs())
        assert missing.status_code == 401 and "API key" in missing.json()["message"]
        wrong = http.request(method, path, params={"api_key": "nope"}, **kwargs())
        assert wrong.status_code == 403 and "not valid" in wrong.json()["message"]
        arguments = kwargs()
        headers = {**arguments.pop("headers", {}), "Authorization": "Bearer key-two"}
        allowed = http.request(method, path, headers=headers, **arguments)
        assert allowed.status_code not in (401, 403), allowed.text


def test_a_key_works_in_each_position(locked: Server) -> None:
    with locked.client() as http:
        assert http.post("/infer/object_detection", json=body(), params={"api_key": "key-one"}).status_code == 200
        assert http.post("/infer/object_detection", json=body(api_key="key-one")).status_code == 200
        assert http.post("/infer/object_detection", json=body(), headers={"Authorization": "bearer key-one"}).status_code == 200
        assert http.post("/infer/object_detection", json=body(api_key="wrong")).status_code == 403


def test_health_stays_open_and_metrics_follow_the_setting(locked: Server) -> None:
    with locked.client() as http:
        assert http.get("/healthz").status_code == 200 and http.get("/readiness").status_code == 200
        assert http.get("/metrics").status_code == 200  # public by default
    log = locked.log()
    assert "key-one" not in log and "key-two" not in log


def test_model_management_can_be_switched_off(start_server) -> None:
    server = start_server({"VISIONSERVE_ALLOW_MODEL_MANAGEMENT": "0"})
    with server.client() as http:
        for path, payload in (("/model/add", {"model_id": "nudenet/1"}), ("/model/remove", {"model_id": "nudenet/1"})):
            response = http.post(path, json=payload)
            assert response.status_code == 403 and "VISIONSERVE_ALLOW_MODEL_MANAGEMENT" in response.json()["message"]
        assert http.post("/model/clear").status_code == 403
        assert http.get("/model/registry").status_code == 200
        assert http.post("/infer/object_detection", json=body()).status_code == 200  # inference loads on demand


def test_open_server_warns_when_exposed(tmp_path: Path) -> None:
    from visionserve.server_process import ServerProcess

    server = ServerProcess(tmp_path / "log", host="0.0.0.0", env={"VISIONSERVE_HOME": str(tmp_path),
                                                                   "VISIONSERVE_WEIGHTS_API": ""}).start()
    server.stop()
    assert "no VISIONSERVE_API_KEYS" in server.log()


def test_cors_is_off_unless_configured(client: httpx.Client, start_server) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/infer/object_detection", headers=preflight).headers
    server = start_server({"VISIONSERVE_CORS_ORIGINS": "https://app.example"})
    with server.client() as http:
        answer = http.options("/infer/object_detection", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        other = http.options("/infer/object_detection", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_request_ids_and_structured_logs(start_server) -> None:
    server = start_server({"VISIONSERVE_LOG_JSON": "1", "VISIONSERVE_LOG_LEVEL": "info"})
    with server.client() as http:
        given = http.post("/infer/object_detection", json=body(), headers={"X-Request-ID": "trace-42"})
        assert given.headers["x-request-id"] == "trace-42"
        made = http.get("/healthz").headers["x-request-id"]
        assert len(made) == 32
        assert http.post("/infer/object_detection", json={}).headers["x-request-id"]  # errors too
    records = [json.loads(line[line.index("{"):]) for line in server.log().splitlines() if '"request_id"' in line]
    inference = next(record for record in records if record["request_id"] == "trace-42")
    assert inference["model"] == "nudenet/1" and inference["images"] == ["384x303"] and inference["status"] == 200
    assert all(inference[f"{stage}_ms"] >= 0 for stage in ("decode", "preprocess", "inference", "postprocess"))
    assert inference["inference_ms"] > 0


def test_metrics(client: httpx.Client) -> None:
    client.post("/infer/object_detection", json=body())
    client.post("/infer/object_detection", json=body(model_id="nowhere/1"))
    text = client.get("/metrics").text
    assert 'visionserve_requests_total{method="POST",model="nudenet/1",route="/infer/object_detection",status="200"}' in text
    assert 'route="/infer/object_detection",status="404"' in text and 'model="nowhere/1"' not in text
    assert "visionserve_request_duration_seconds_bucket" in text
    assert 'visionserve_stage_duration_seconds_count{model="nudenet/1",stage="decode"}' in text
    assert 'visionserve_model_loads_total{model="nudenet/1",outcome="loaded"}' in text
    assert "visionserve_models_loaded " in text and "visionserve_inferences_in_flight " in text
    assert "visionserve_inferences_queued " in text and "visionserve_model_load_duration_seconds_count" in text


def test_back_pressure_answers_503_instead_of_queueing(start_server) -> None:
    # Threads enough to validate every body at once: with one thread, a body's validation queued behind the previous
    # request's inference let each request finish before the next was counted, and none was refused.
    server = start_server({"VISIONSERVE_MAX_INFLIGHT": "2", "VISIONSERVE_INFERENCE_THREADS": "8"})
    slow = {"model_id": "nudenet/1", "image": [image_value(photo("retina"))] * 12}
    statuses: list[int] = []
    with server.client() as http:
        http.post("/infer/object_detection", json=body())  # load the model first
        threads = [threading.Thread(target=lambda: statuses.append(http.post("/infer/object_detection", json=slow).status_code))
                   for _ in range(5)]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join()
        refused = [s for s in statuses if s == 503]
        assert statuses.count(200) >= 2 and refused, statuses
        response = http.post("/infer/object_detection", json=body())
        assert response.status_code == 200  # capacity comes back


def test_a_request_past_its_deadline_gets_504(start_server) -> None:
    server = start_server({"VISIONSERVE_REQUEST_TIMEOUT_S": "0.5", "VISIONSERVE_PRELOAD_MODELS": "nudenet/1"})
    with server.client() as http:
        heavy = {"model_id": "nudenet/1", "image": [image_value(photo("retina"))] * 40}
        response = http.post("/infer/object_detection", json=heavy)
        assert response.status_code == 504 and "longer than 0.5 s" in response.json()["message"]
        # The server serves again; on a loaded machine (pytest-xdist's other worker) one small request can itself
        # pass 0.5 s, so a few tries.
        deadline = time.monotonic() + 10
        while (status := http.post("/infer/object_detection", json=body()).status_code) == 504:
            assert time.monotonic() < deadline, "every request after the slow one timed out"
        assert status == 200


def test_work_of_a_client_that_left_is_dropped(start_server) -> None:
    """With one worker busy, queued requests whose clients hang up are skipped, not run."""
    server = start_server({"VISIONSERVE_INFERENCE_THREADS": "1", "VISIONSERVE_LOG_LEVEL": "info"})
    heavy = json.dumps({"model_id": "nudenet/1", "image": [image_value(photo("retina"))] * 10}).encode()
    with server.client() as http:
        http.post("/infer/object_detection", json=body())
        busy = threading.Thread(target=lambda: http.post("/infer/object_detection", content=heavy,
                                                         headers={"Content-Type": "application/json"}))
        busy.start()
        time.sleep(0.3)
        for _ in range(3):  # queue behind it, then hang up
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(b"POST /infer/object_detection HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(heavy)}\r\n\r\n".encode() + heavy)
                time.sleep(0.1)
        busy.join()
        time.sleep(0.5)
        started = time.monotonic()
        assert http.post("/infer/object_detection", json=body()).status_code == 200
        assert time.monotonic() - started < 3  # the abandoned batches did not run before it
    assert server.log().count("status=499") == 3


def test_sigterm_finishes_in_flight_requests_and_exits_0(start_server) -> None:
    server = start_server()
    results: list[int] = []
    heavy = {"model_id": "nudenet/1", "image": [image_value(photo("retina"))] * 8}
    with server.client() as http:
        http.post("/infer/object_detection", json=body())
        request = threading.Thread(target=lambda: results.append(http.post("/infer/object_detection", json=heavy).status_code))
        request.start()
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        request.join()
        assert server.process.wait(timeout=30) == 0
    assert results == [200]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz")
