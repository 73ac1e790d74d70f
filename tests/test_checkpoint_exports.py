"""The store's checkpoint export cache: concurrent adds of one checkpoint export it once, a killed export leaves
nothing taken for finished, and removing the last model made from an export removes it. Real exports of the
genuine Ultralytics fixture checkpoint (test_checkpoints.py), by the real CLI in real processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_checkpoints import EXPORT_PYTHON, FIXTURES, MODELS, ROOT, add
from visionserve.cli import app
from visionserve.models.checkpoints import EXPORTS, CheckpointExporter, is_complete
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore

CHECKPOINT = FIXTURES / MODELS["yolo-detect"]["file"]
EXPORTING, WAITING = "exporting yolo-detect.pt to ONNX", "waiting for another export of yolo-detect.pt to finish"
REUSED = "using the ONNX exported earlier from this checkpoint"


def slow_python(folder: Path) -> str:
    """The real export Python, started a few seconds late: the export holds its lock long enough for a second
    add (whose process needs a moment to start) to find it held."""
    script = folder / "slow-python"
    script.write_text(f'#!/bin/sh\nsleep 4\nexec "{EXPORT_PYTHON}" "$@"\n')
    script.chmod(0o755)
    return str(script)


def start_add(home: Path, model_id: str, python: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """`visionserve models add` in its own process (and process group); its output lines, as they come."""
    env = {**os.environ, "VISIONSERVE_HOME": str(home), "YOLO_CONFIG_DIR": str(home / "yolo-config"),
           "VISIONSERVE_EXPORT_PYTHON": python, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "COLUMNS": "300"}
    command = [sys.executable, "-m", "visionserve", "models", "add", str(CHECKPOINT), "--id", model_id]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()  # type: ignore
    return process, lines


def wait_for(lines: queue.Queue[str], text: str, timeout_s: float = 60) -> list[str]:
    seen = []
    while not any(text in line for line in seen):
        seen.append(lines.get(timeout=timeout_s))
    return seen


def test_two_processes_adding_one_checkpoint_export_it_once(tmp_path: Path) -> None:
    first, first_lines = start_add(tmp_path, "first/1", slow_python(tmp_path))
    wait_for(first_lines, EXPORTING)
    second, second_lines = start_add(tmp_path, "second/1", "/nonexistent/python")  # it must never export
    assert second.wait(timeout=120) == 0 and first.wait(timeout=120) == 0
    theirs = "".join(second_lines.queue)
    assert WAITING in theirs and REUSED in theirs and EXPORTING not in theirs, theirs
    store = ModelStore(tmp_path / "models")
    assert {manifest.model_id for manifest in store.list()} == {"first/1", "second/1"}
    assert len({manifest.weights_sha256 for manifest in store.list()}) == 1
    assert not list((tmp_path / "models" / EXPORTS).glob("*.lock"))  # its lock goes with its export


def test_two_threads_adding_one_checkpoint_export_it_once(tmp_path: Path) -> None:
    store, reports = ModelStore(tmp_path), {"first/1": [], "second/1": []}
    pythons = {"first/1": slow_python(tmp_path), "second/1": "/nonexistent/python"}
    errors: list[BaseException] = []

    def run(model_id: str) -> None:
        try:
            import_model(store, CHECKPOINT, model_id, ManifestOverrides(),
                         exporter=CheckpointExporter(pythons[model_id], reports[model_id].append))  # fmt: skip
        except BaseException as error:  # noqa: BLE001 - shown by the assert below
            errors.append(error)

    first = threading.Thread(target=run, args=("first/1",))
    first.start()
    while not any(EXPORTING in line for line in list(reports["first/1"])):
        first.join(timeout=0.05)
        assert first.is_alive() or errors, reports
    second = threading.Thread(target=run, args=("second/1",))
    second.start()
    first.join(timeout=120)
    second.join(timeout=120)
    assert not errors, errors
    assert any(WAITING in line for line in reports["second/1"]), reports
    assert any(REUSED in line for line in reports["second/1"]), reports
    assert not any(EXPORTING in line for line in reports["second/1"])
    assert len({store.find(model_id).manifest.weights_sha256 for model_id in reports}) == 1  # type: ignore[union-attr]


def test_an_export_killed_half_way_leaves_no_lock_and_nothing_taken_for_finished(tmp_path: Path) -> None:
    killed, lines = start_add(tmp_path, "killed/1", slow_python(tmp_path))
    wait_for(lines, EXPORTING)
    os.killpg(killed.pid, signal.SIGKILL)  # the add and its export worker, mid-export
    killed.wait(timeout=30)
    exports = tmp_path / "models" / EXPORTS
    assert not any(is_complete(entry) for entry in exports.iterdir()) if exports.is_dir() else True
    code, output = add(tmp_path, CHECKPOINT, "--id", "again/1")
    assert code == 0 and EXPORTING in output and WAITING not in output and REUSED not in output, output
    assert [entry for entry in exports.iterdir()] == [entry for entry in exports.iterdir() if is_complete(entry)]


@pytest.fixture()
def two_from_one(tmp_path: Path) -> Path:
    """Two models made from one checkpoint (one export) in a fresh home."""
    for model_id in ("first/1", "second/1"):
        code, output = add(tmp_path, CHECKPOINT, "--id", model_id)
        assert code == 0, output
    return tmp_path


def test_removing_models_removes_their_export_with_the_last_one(two_from_one: Path) -> None:
    exports = two_from_one / "models" / EXPORTS
    (entry,) = exports.iterdir()
    env = {"VISIONSERVE_HOME": str(two_from_one)}
    kept = CliRunner().invoke(app, ["models", "remove", "first/1"], env=env)
    assert kept.exit_code == 0 and "removed first/1" in kept.output, kept.output
    assert "kept its checkpoint export" in kept.output and "second/1 was made from it too" in kept.output
    assert is_complete(entry)
    gone = CliRunner().invoke(app, ["models", "remove", "second/1"], env=env)
    assert gone.exit_code == 0 and f"removed its checkpoint export {entry}" in " ".join(gone.output.split())
    assert list(exports.iterdir()) == []
