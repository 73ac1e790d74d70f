"""What a new user met at the shell: a port already taken, a broken photo in a folder, help texts, removing a
model a server holds, what `make serve` installs, and small wording."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import FIXTURES, Server, encode, photo
from tests.test_cli_server import cli_env, visionserve  # noqa: F401 (cli_env is a fixture)
from visionserve.server_process import listens_on

ROOT = Path(__file__).parent.parent


# --- item 4: a port someone else listens on ---


def test_start_on_a_taken_port_fails_and_records_nothing(server: Server, cli_env: dict[str, str]) -> None:  # noqa: F811
    started = visionserve("server", "start", "--port", str(server.port), "--wait", "60", env=cli_env)
    assert started.returncode == 1, started.stdout
    assert "ready" not in started.stdout
    assert f"127.0.0.1:{server.port} is already in use" in started.stderr
    assert not list(Path(cli_env["VISIONSERVE_HOME"]).glob("servers/*.json"))
    status = visionserve("server", "status", env=cli_env)
    assert status.returncode == 1 and "no server is running" in status.stdout


def test_readiness_counts_only_from_the_process_that_was_started(server: Server) -> None:
    assert server.process is not None
    assert listens_on(server.process.pid, server.port) is True
    assert listens_on(os.getpid(), server.port) is False  # this process does not hold the server's socket
    with socket.socket() as mine:
        mine.bind(("127.0.0.1", 0))
        mine.listen()
        assert listens_on(os.getpid(), mine.getsockname()[1]) is True


# --- item 5: a folder with a broken photo; labels on drawings; no empty tables ---


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = encode(photo("astronaut"))
    (photos / "a-astronaut.jpg").write_bytes(astronaut)
    (photos / "b-truncated.jpg").write_bytes(astronaut[: len(astronaut) // 2])
    (photos / "c-blank.png").write_bytes(encode(np.full((64, 64, 3), 128, np.uint8), ".png"))
    return photos


def test_infer_goes_past_a_broken_image_and_sums_up(server: Server, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "annotated"
    ran = visionserve("infer", str(folder), "--model", "nudenet/1", "--api-url", server.url, "--visualize", str(out),
                      env={})  # fmt: skip
    assert ran.returncode == 1
    assert "FACE_FEMALE" in ran.stdout  # the image before the broken one
    assert "c-blank.png (64x64" in ran.stdout and "no predictions" in ran.stdout  # and the one after
    assert "b-truncated.jpg" in ran.stderr and "truncated or corrupt JPEG" in ran.stderr
    assert "2 ok, 1 failed" in ran.stderr  # stdout: the predictions only
    assert sorted(path.name for path in out.iterdir()) == ["a-astronaut.jpg", "c-blank.jpg"]


def test_no_table_is_printed_for_an_image_without_predictions(server: Server, folder: Path) -> None:
    ran = visionserve("infer", str(folder / "c-blank.png"), "--model", "nudenet/1", "--api-url", server.url, env={})
    assert ran.returncode == 0
    assert ran.stdout.strip().startswith("c-blank.png (64x64") and "no predictions" in ran.stdout
    assert "class" not in ran.stdout and "━" not in ran.stdout and "─" not in ran.stdout


def test_infer_json_writes_only_json_to_stdout(server: Server, tmp_path: Path) -> None:
    """`visionserve infer photos/ --json | jq` works: one JSON document on stdout (image → answer), progress and
    the summary on stderr."""
    photos = tmp_path / "two"
    photos.mkdir()
    for name in ("astronaut", "coffee"):
        (photos / f"{name}.jpg").write_bytes(encode(photo(name)))
    ran = visionserve("infer", str(photos), "--model", "nudenet/1", "--api-url", server.url, "--json", env={})
    assert ran.returncode == 0, ran.stderr
    answers = json.loads(ran.stdout)
    assert list(answers) == [str(photos / "astronaut.jpg"), str(photos / "coffee.jpg")]
    assert answers[str(photos / "astronaut.jpg")]["predictions"][0]["class"] == "FACE_FEMALE"
    assert "2 ok, 0 failed" in ran.stderr
    single = visionserve("infer", str(photos / "coffee.jpg"), "--model", "nudenet/1", "--api-url", server.url,
                         "--json", env={})  # fmt: skip
    assert json.loads(single.stdout)["image"] == {"width": 600, "height": 400}


def test_visualize_draws_labels_unless_told_not_to(server: Server, folder: Path, tmp_path: Path) -> None:
    drawn = {}
    for switch in ("--labels", "--no-labels"):
        out = tmp_path / switch
        ran = visionserve("infer", str(folder / "a-astronaut.jpg"), "--model", "nudenet/1", "--api-url", server.url,
                          "--visualize", str(out), switch, env={})  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        drawn[switch] = cv2.imread(str(out / "a-astronaut.jpg")).astype(int)
    # The label sits just above the face box (x 173..274, y 83..179): the two drawings differ there only.
    difference = np.abs(drawn["--labels"] - drawn["--no-labels"]).sum(axis=2) > 60
    rows, columns = np.nonzero(difference)
    assert rows.size > 200
    assert rows.max() <= 90 and columns.min() >= 165


# --- item 10: help texts (more in test_cli_help.py) ---


def test_the_environment_still_sets_the_options(server: Server) -> None:
    ran = visionserve("infer", str(ROOT / "visionserve/assets/astronaut.jpg"), "--model", "nudenet/1",
                      env={"VISIONSERVE_API_URL": server.url})  # fmt: skip
    assert ran.returncode == 0 and "FACE_FEMALE" in ran.stdout


# --- item 11: removing a model a running server holds ---


def test_models_remove_unloads_it_from_the_background_server(cli_env: dict[str, str]) -> None:  # noqa: F811
    model = FIXTURES / "models" / "shapes-detect.onnx"
    assert visionserve("models", "add", str(model), "--id", "my-shapes/1", env=cli_env).returncode == 0
    assert visionserve("server", "start", "--model", "my-shapes/1", env=cli_env).returncode == 0
    url = f"http://127.0.0.1:{cli_env['VISIONSERVE_PORT']}"
    assert [m["model_id"] for m in httpx.get(f"{url}/model/registry").json()["models"]] == ["my-shapes/1"]
    removed = visionserve("models", "remove", "my-shapes/1", env=cli_env)
    assert removed.returncode == 0
    assert "removed my-shapes/1" in removed.stdout and f"no longer in memory at {url}" in " ".join(removed.stdout.split())
    assert httpx.get(f"{url}/model/registry").json()["models"] == []
    body = {"model_id": "my-shapes/1", "image": {"type": "base64", "value": ""}}
    assert httpx.post(f"{url}/infer/object_detection", json=body).status_code == 404


# --- item 12: what `make serve` installs ---


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_serve_installs_only_what_serving_needs(tmp_path: Path) -> None:
    def planned(target: str) -> str:
        venv = f"VENV={tmp_path / target / '.venv'}"  # a fresh venv: make prints every step it would take
        return subprocess.run(["make", "-n", target, venv], cwd=ROOT, capture_output=True, text=True, check=True).stdout

    serve = planned("serve")
    assert "pip install --quiet -e ." in serve and "[test]" not in serve and ".venv-sdk" not in serve
    assert "pip install --quiet -e '.[test]'" in planned("test")


def test_the_test_extras_hold_the_browser_driver() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(requirement.startswith("playwright") for requirement in project["optional-dependencies"]["test"])
    assert not any(requirement.startswith("playwright") for requirement in project["dependencies"])


def test_ci_installs_chromium_before_the_suite() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert script.index("apt-get install -y -qq chromium") < script.index("make test")


# --- item 13: small wording ---


def test_a_task_mismatch_uses_the_right_article(client: httpx.Client) -> None:
    body = {"model_id": "nudenet/1", "image": {"type": "base64", "value": ""}}
    message = client.post("/infer/classification", json=body).json()["message"]
    assert "is an object-detection model" in message


def test_models_list_never_cuts_the_task_column(cli_env: dict[str, str]) -> None:  # noqa: F811
    model = FIXTURES / "models" / "shapes-segment.onnx"
    assert visionserve("models", "add", str(model), "--id", "a-rather-long-project-name/12", env=cli_env).returncode == 0
    listed = visionserve("models", "list", env={**cli_env, "COLUMNS": "80"})
    assert listed.returncode == 0 and "instance-segmentation" in listed.stdout
    assert json.dumps("…") not in listed.stdout and "segmenta…" not in listed.stdout
