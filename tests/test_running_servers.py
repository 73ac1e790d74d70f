"""One notion of the running servers: every `visionserve serve` (however started: `server start`, `make serve`,
`visionserve serve`, `--workers N`) is listed by `server status`, reached by `models remove`, and refused a port
another server holds with a plain message."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES
from tests.test_cli_server import cli_env, visionserve  # noqa: F401 (cli_env is a fixture)
from visionserve.server_process import free_port

ROOT = Path(__file__).parent.parent
MAKE_SERVE = ROOT / ".venv" / "bin" / "visionserve"  # what the Makefile's `serve` target runs
needs_make = pytest.mark.skipif(shutil.which("make") is None or not MAKE_SERVE.exists(), reason="no make or .venv")

Foreground = Callable[..., tuple[subprocess.Popen[bytes], str]]


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/readiness", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready: {log.read_text()}")


@pytest.fixture
def foreground(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Foreground]:  # noqa: F811
    """Start servers in the foreground as a user would in a terminal (`make serve`, `visionserve serve`), each
    in a session of its own so that stopping it is Ctrl+C's SIGINT to the whole group."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, make: bool = False, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        if make:  # -o: never reinstall the venv from a test
            command = ["make", "-s", "-o", ".venv/.installed", "serve", f"ARGS=--port {port} {' '.join(args)}"]
        else:
            command = [sys.executable, "-m", "visionserve", "serve", "--port", str(port), *args]
        log = tmp_path / f"foreground{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **cli_env, **(env or {})}, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(process, url, log)
        return process, url

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    for process in started:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _registry(home: Path) -> list[Path]:
    return sorted((home / "servers").glob("*.json"))


@needs_make
def test_status_lists_every_server_however_it_was_started(
    cli_env: dict[str, str], foreground: Foreground  # noqa: F811
) -> None:
    home = Path(cli_env["VISIONSERVE_HOME"])
    background = visionserve("server", "start", env=cli_env)
    assert background.returncode == 0, background.stderr
    made, made_url = foreground(make=True)
    plain, plain_url = foreground("--workers", "2")
    assert len(_registry(home)) == 3

    status = visionserve("server", "status", env=cli_env)
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {line.split("│")[2].strip(): line for line in status.stdout.splitlines() if "http://" in line}
    background_url = f"http://127.0.0.1:{cli_env['VISIONSERVE_PORT']}"
    assert set(rows) == {background_url, made_url, plain_url}
    assert "server start" in rows[background_url] and "make serve" in rows[made_url]
    assert "visionserve serve" in rows[plain_url] and "2" in rows[plain_url].split("│")[4]
    assert all("ready" in row for row in rows.values())

    # Ctrl+C: the server says goodbye and leaves the registry; kill -9: the next reader drops its entry.
    os.killpg(made.pid, signal.SIGINT)
    made.wait(timeout=30)
    os.killpg(plain.pid, signal.SIGKILL)
    plain.wait(timeout=30)
    status = visionserve("server", "status", env=cli_env)
    assert made_url not in status.stdout and plain_url not in status.stdout and background_url in status.stdout
    assert len(_registry(home)) == 1

    stopped = visionserve("server", "stop", env=cli_env)
    assert stopped.returncode == 0 and f"stopped the server at {background_url}" in stopped.stdout
    assert _registry(home) == []
    none = visionserve("server", "status", env=cli_env)
    assert none.returncode == 1 and "no server is running" in none.stdout


def _holds(url: str, model_id: str, key: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return model_id in [m["model_id"] for m in httpx.get(f"{url}/model/registry", headers=headers).json()["models"]]


def test_models_remove_reaches_every_running_server(
    cli_env: dict[str, str], foreground: Foreground  # noqa: F811
) -> None:
    model = FIXTURES / "models" / "shapes-detect.onnx"
    assert visionserve("models", "add", str(model), "--id", "my-shapes/1", env=cli_env).returncode == 0
    assert visionserve("server", "start", "--model", "my-shapes/1", env=cli_env).returncode == 0
    background_url = f"http://127.0.0.1:{cli_env['VISIONSERVE_PORT']}"
    _, open_url = foreground("--model", "my-shapes/1")
    keyed, keyed_url = foreground("--model", "my-shapes/1", env={"VISIONSERVE_API_KEYS": "secret"})
    assert _holds(background_url, "my-shapes/1") and _holds(open_url, "my-shapes/1")
    assert _holds(keyed_url, "my-shapes/1", "secret")

    removed = visionserve("models", "remove", "my-shapes/1", env=cli_env)
    text = " ".join(removed.stdout.split())
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"no longer in memory at {background_url}" in text and f"no longer in memory at {open_url}" in text
    assert f"could not unload it from {keyed_url}" in text and "401" in text and "VISIONSERVE_API_KEY" in text
    assert not _holds(background_url, "my-shapes/1") and not _holds(open_url, "my-shapes/1")
    assert _holds(keyed_url, "my-shapes/1", "secret")

    assert visionserve("models", "add", str(model), "--id", "my-shapes/1", env=cli_env).returncode == 0
    with_key = visionserve("models", "remove", "my-shapes/1", env={**cli_env, "VISIONSERVE_API_KEY": "secret"})
    assert with_key.returncode == 0 and f"no longer in memory at {keyed_url}" in " ".join(with_key.stdout.split())
    assert not _holds(keyed_url, "my-shapes/1", "secret")


def test_models_remove_with_no_server_running_says_so(cli_env: dict[str, str]) -> None:  # noqa: F811
    model = FIXTURES / "models" / "shapes-detect.onnx"
    assert visionserve("models", "add", str(model), "--id", "my-shapes/1", env=cli_env).returncode == 0
    removed = visionserve("models", "remove", "my-shapes/1", env=cli_env)
    text = " ".join(removed.stdout.split())
    assert removed.returncode == 0 and "removed my-shapes/1" in text and "no server runs from" in text
    assert "keeps serving it from memory" in text  # servers of another home (Docker, Ray) are out of reach


@needs_make
def test_make_serve_twice_says_a_server_runs_there(
    cli_env: dict[str, str], foreground: Foreground  # noqa: F811
) -> None:
    _, url = foreground(make=True)
    port = url.rsplit(":", 1)[1]
    second = subprocess.run(["make", "-s", "-o", ".venv/.installed", "serve", f"ARGS=--port {port}"], cwd=ROOT,
                            env={**os.environ, **cli_env}, capture_output=True, text=True, timeout=120)  # fmt: skip
    output = second.stdout + second.stderr
    assert second.returncode != 0
    assert f"visionserve already runs at {url}" in output and "started by make serve" in output
    assert "Errno 98" not in output and "Traceback" not in output and "startup complete" not in output


def test_serve_on_a_port_another_program_holds_says_so(cli_env: dict[str, str]) -> None:  # noqa: F811
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        ran = visionserve("serve", "--port", str(port), env=cli_env, timeout=60)
    assert ran.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in ran.stderr and "Traceback" not in ran.stderr + ran.stdout


def test_an_entry_is_dropped_once_another_process_holds_its_port(cli_env: dict[str, str]) -> None:  # noqa: F811
    """A registered process that does not hold its port is starting or stopping, unless someone else holds it."""
    import socket

    home = Path(cli_env["VISIONSERVE_HOME"])
    registering = ("import time; from visionserve.cli.running_servers import registered; from visionserve.config "
                   "import Settings\nwith registered(Settings()): time.sleep(120)")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", registering], env={**os.environ, **cli_env})
    try:
        deadline = time.monotonic() + 30
        while not _registry(home) and time.monotonic() < deadline:
            time.sleep(0.1)
        status = visionserve("server", "status", env=cli_env)
        assert status.returncode == 0 and "starting or stopping" in status.stdout
        with socket.socket() as other:
            other.bind(("127.0.0.1", int(cli_env["VISIONSERVE_PORT"])))
            other.listen()
            status = visionserve("server", "status", env=cli_env)
        assert status.returncode == 1 and "no server is running" in status.stdout
        assert _registry(home) == []
    finally:
        child.kill()
        child.wait()
