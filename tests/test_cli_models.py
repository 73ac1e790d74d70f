"""`visionserve models add|list|remove`, and serving what was added."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import image_value, photo
from visionserve.cli import app
from visionserve.models.builtin import BuiltinModels

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    package = BuiltinModels().find("nudenet/1")
    assert package is not None
    return Path(shutil.copy(package.weights_path, tmp_path / "detector.onnx"))


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_add_reads_metadata_list_and_remove(home: Path, onnx_file: Path) -> None:
    code, output = cli("models", "add", str(onnx_file), "--id", "my-project/3")
    assert code == 0, output
    assert "my-project/3" in output and "object-detection" in output and "18 classes" in output
    manifest = json.loads((home / "models/my-project/3/manifest.json").read_text())
    assert manifest["task"] == "object-detection" and manifest["input_size"] == [320, 320]
    assert manifest["class_names"][1] == "FACE_FEMALE" and manifest["resize"] == "letterbox"
    code, output = cli("models", "list")
    assert code == 0 and "my-project/3" in output and "nudenet/1" in output
    code, output = cli("models", "remove", "my-project/3")
    assert code == 0 and not (home / "models/my-project").exists()
    code, output = cli("models", "remove", "my-project/3")
    assert code == 1 and "no model my-project/3" in output


def test_overrides_win_over_metadata(home: Path, onnx_file: Path) -> None:
    names = ",".join(f"c{i}" for i in range(18))
    code, output = cli(
        "models", "add", str(onnx_file), "--id", "p/1", "--classes", names, "--imgsz", "416,640", "--resize", "stretch"
    )
    assert code == 0, output
    manifest = json.loads((home / "models/p/1/manifest.json").read_text())
    assert manifest["class_names"][17] == "c17" and manifest["input_size"] == [416, 640]
    assert manifest["resize"] == "stretch"


def test_clear_errors(home: Path, onnx_file: Path, tmp_path: Path) -> None:
    assert cli("models", "add", str(onnx_file), "--id", "p/1")[0] == 0
    code, output = cli("models", "add", str(onnx_file), "--id", "p/1")
    assert code == 1 and "already in the store" in output and "--force" in output
    assert cli("models", "add", str(onnx_file), "--id", "p/1", "--force")[0] == 0
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx file")
    code, output = cli("models", "add", str(junk), "--id", "p/2")
    assert code == 1 and "cannot open junk.onnx as an ONNX model" in output
    code, output = cli("models", "add", str(onnx_file), "--id", "../escape")
    assert code == 1 and "Invalid Model ID" in output
    code, output = cli("models", "add", str(onnx_file), "--id", "p/3", "--classes", "a,b,c")
    assert code == 1 and "matches no known YOLO layout for 3 classes" in output
    code, output = cli("models", "add", str(onnx_file), "--id", "p/4", "--task", "dance")
    assert code == 1 and "unknown task" in output
    assert not (home / "models/p/2").exists() and not (home / "models/p/3").exists()


def test_server_serves_an_added_model(home: Path, onnx_file: Path, start_server) -> None:
    assert cli("models", "add", str(onnx_file), "--id", "my-project/3")[0] == 0
    server = start_server(home=home)
    with server.client() as client:
        image = image_value(photo("astronaut"))
        added = client.post("/infer/object_detection", json={"model_id": "my-project/3", "image": image}).json()
        builtin = client.post("/infer/object_detection", json={"model_id": "nudenet/1", "image": image}).json()
    strip = lambda body: [{k: v for k, v in p.items() if k != "detection_id"} for p in body["predictions"]]
    assert strip(added) == strip(builtin) and strip(added)
