"""`visionserve server start|status|logs|stop`, `visionserve infer`, `visionserve benchmark api-speed`, Docker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import pytest

from tests.conftest import Server, encode, image_value, photo
from visionserve.server_process import free_port

ROOT = Path(__file__).parent.parent


def visionserve(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visionserve", *args],
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli_env(tmp_path: Path):
    env = {"VISIONSERVE_HOME": str(tmp_path / "home"), "VISIONSERVE_PORT": str(free_port()),
           "VISIONSERVE_WEIGHTS_API": ""}
    yield env
    visionserve("server", "stop", "--wait", "5", env=env)  # never leave a server behind


def test_start_status_infer_logs_stop(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert visionserve("server", "status", env=cli_env).returncode == 1
    started = visionserve("server", "start", "--model", "nudenet/1", env=cli_env)
    assert started.returncode == 0, started.stderr + started.stdout
    url = f"http://127.0.0.1:{cli_env['VISIONSERVE_PORT']}"
    assert f"ready at {url}" in started.stdout
    records = list(Path(cli_env["VISIONSERVE_HOME"]).glob("servers/*.json"))
    assert len(records) == 1 and (Path(cli_env["VISIONSERVE_HOME"]) / "server.log").exists()
    again = visionserve("server", "start", env=cli_env)
    assert again.returncode == 0 and "already running" in again.stdout
    status = visionserve("server", "status", env=cli_env)
    assert status.returncode == 0 and "ready" in status.stdout and "nudenet/1" in status.stdout

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "coffee"):
        (folder / f"{name}.jpg").write_bytes(encode(photo(name)))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "annotated"
    inferred = visionserve("infer", str(folder), "--model", "nudenet/1", "--visualize", str(out), env=cli_env)
    assert inferred.returncode == 0, inferred.stderr
    assert "FACE_FEMALE" in inferred.stdout and "astronaut.jpg (512x512" in inferred.stdout
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.jpg", "coffee.jpg"]
    assert cv2.imread(str(out / "astronaut.jpg")).shape == (512, 512, 3)
    as_json = visionserve("infer", str(folder / "astronaut.jpg"), "--model", "nudenet/1", "--json", env=cli_env)
    assert json.loads(as_json.stdout)["predictions"][0]["class"] == "FACE_FEMALE"
    missing = visionserve("infer", str(folder / "astronaut.jpg"), "--model", "nope/1", env=cli_env)
    assert missing.returncode == 1 and "404" in missing.stderr

    logs = visionserve("server", "logs", "-n", "5", env=cli_env)
    assert logs.returncode == 0 and "method=POST path=/infer/object_detection status=200" in logs.stdout

    stopped = visionserve("server", "stop", env=cli_env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not records[0].exists()
    assert visionserve("server", "status", env=cli_env).returncode == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz")


def test_stop_lets_in_flight_requests_finish(cli_env: dict[str, str]) -> None:
    assert visionserve("server", "start", env=cli_env).returncode == 0
    url = f"http://127.0.0.1:{cli_env['VISIONSERVE_PORT']}"
    big = cv2.resize(photo("astronaut"), (3000, 3000))
    batch = {"model_id": "nudenet/1", "image": [image_value(big)] * 24}
    answers: list[int] = []
    request = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/infer/object_detection", json=batch,
                                                                         timeout=120).status_code))
    request.start()
    time.sleep(1.0)  # the batch is being decoded and run
    stopped = visionserve("server", "stop", env=cli_env)
    request.join()
    assert stopped.returncode == 0 and "killed" not in stopped.stdout
    assert answers == [200]


def test_benchmark_api_speed(server: Server) -> None:
    result = visionserve("benchmark", "api-speed", "--model", "nudenet/1", "--requests", "20", "--concurrency", "2",
                         "--api-url", server.url, env={})
    assert result.returncode == 0, result.stderr
    assert "requests/s" in result.stdout and "p99 ms" in result.stdout
    row = result.stdout.strip().splitlines()[-2]
    requests_per_second, errors = float(row.split("│")[1]), int(row.split("│")[6])
    assert requests_per_second > 0 and errors == 0


def test_docker_without_an_engine_says_so(cli_env: dict[str, str]) -> None:
    result = visionserve("server", "start", "--docker", env=cli_env)
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        pytest.skip("a Docker engine is running here")  # pragma: no cover - CI has no engine
    assert result.returncode == 1
    assert "Docker is not installed" in result.stderr or "no Docker engine is running" in result.stderr


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), "Dockerfile", "Dockerfile.gpu"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
