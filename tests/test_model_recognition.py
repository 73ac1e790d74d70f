"""How `models add` tells a bare ONNX file's family and task, and every refusal where it cannot be sure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import FIXTURES
from tests.onnx_edit import constant_outputs, with_metadata
from visionserve.cli import app

runner = CliRunner()
MODELS = FIXTURES / "models"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def add(path: Path, *flags: str) -> tuple[int, str]:
    result = runner.invoke(app, ["models", "add", str(path), "--id", "m/1", *flags])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def manifest(home: Path) -> dict:
    return json.loads((home / "models/m/1/manifest.json").read_text())


def test_a_metadata_free_objectness_output_is_refused_naming_both_families(home: Path, tmp_path: Path) -> None:
    bare = with_metadata(MODELS / "shapes-detect-v5classic.onnx", tmp_path / "bare.onnx", {})
    code, output = add(bare, "--classes", "circle,square,triangle")
    assert code == 1
    assert "classic YOLOv5 and YOLOX" in output and "--family yolov5" in output and "--family yolox" in output
    code, output = add(bare, "--classes", "circle,square,triangle", "--family", "yolov5")
    assert code == 0, output
    assert manifest(home)["family"] == "yolo" and manifest(home)["task"] == "object-detection"


def test_classic_yolov5_metadata_without_a_task_is_recognised_from_its_outputs(home: Path, tmp_path: Path) -> None:
    # What the pip `yolov5` exporter writes: stride and names only.
    v5 = with_metadata(MODELS / "shapes-detect-v5classic.onnx", tmp_path / "v5.onnx",
                       {"stride": "32", "names": "{0: 'circle', 1: 'square', 2: 'triangle'}"})
    code, output = add(v5)
    assert code == 0, output
    assert manifest(home)["task"] == "object-detection" and manifest(home)["family"] == "yolo"
    assert manifest(home)["class_names"] == ["circle", "square", "triangle"]


def test_a_plain_classifier_needs_its_normalisation_named(home: Path, tmp_path: Path) -> None:
    bare = with_metadata(MODELS / "shapes-classify.onnx", tmp_path / "cls.onnx", {})
    code, output = add(bare, "--classes", "circle,square,triangle")
    assert code == 1 and "--normalize imagenet" in output and "--normalize none" in output
    code, output = add(bare, "--classes", "circle,square,triangle", "--normalize", "imagenet")
    assert code == 0, output
    stored = manifest(home)
    assert stored["task"] == "classification" and stored["resize"] == "center-crop"
    assert stored["normalization"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert stored["crop_fraction"] == 0.875


def test_explicit_mean_and_std(home: Path, tmp_path: Path) -> None:
    bare = with_metadata(MODELS / "shapes-classify.onnx", tmp_path / "cls.onnx", {})
    code, output = add(bare, "--classes", "a,b,c", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--crop-fraction", "1")
    assert code == 0, output
    assert manifest(home)["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3} and manifest(home)["crop_fraction"] == 1
    code, output = add(bare, "--classes", "a,b,c", "--mean", "0.5,0.5", "--std", "1,1,1", "--force")
    assert code == 1 and "three numbers" in output
    code, output = add(bare, "--classes", "a,b,c", "--normalize", "zscore", "--force")
    assert code == 1 and "unknown --normalize" in output


def test_an_ultralytics_task_this_server_does_not_serve_is_named(home: Path, tmp_path: Path) -> None:
    other = with_metadata(MODELS / "shapes-detect.onnx", tmp_path / "other.onnx",
                          {"task": "depth", "names": "{0: 'a'}", "imgsz": "[160, 160]"})
    code, output = add(other)
    assert code == 1 and "task is 'depth'" in output and "does not serve" in output
    assert "broken" not in output


def test_a_semantic_task_on_detection_outputs_is_refused_by_layout(home: Path, tmp_path: Path) -> None:
    semantic = with_metadata(MODELS / "shapes-detect.onnx", tmp_path / "semantic.onnx",
                             {"task": "semantic", "names": "{0: 'a'}", "imgsz": "[160, 160]"})
    code, output = add(semantic)
    assert code == 1 and "[B, 160, 160] class map" in output and "got [1, 7, 525]" in output


def test_an_rfdetr_keypoint_model_is_told_from_its_outputs(home: Path, tmp_path: Path) -> None:
    keypoints = constant_outputs(tmp_path / "kp.onnx", "input", [1, 3, 64, 64],
                                 {"dets": [1, 10, 4], "labels": [1, 10, 2], "keypoints": [1, 10, 17, 8]})
    code, output = add(keypoints, "--classes", "person")
    assert code == 0, output
    stored = manifest(home)
    assert stored["family"] == "rfdetr" and stored["task"] == "keypoint-detection" and stored["resize"] == "stretch"
    code, output = add(keypoints, "--classes", "person", "--force", "--keypoints", str(schema(tmp_path, 16)))
    assert code == 1 and "keypoint schema [16] does not fit the model's 17 keypoint slots" in output


def schema(folder: Path, count: int) -> Path:
    path = folder / "keypoints_metadata.json"
    path.write_text(json.dumps([{"object_class_id": 0, "keypoints": {str(i): f"p{i}" for i in range(count)}}]))
    return path


def test_rfdetr_is_told_from_its_output_names_and_matched_by_name(home: Path, tmp_path: Path) -> None:
    # Three classes: the logits' last axis (4) equals the boxes'; only the names tell them apart. The outputs are
    # listed logits first, so a reader going by position would take the logits for boxes.
    model = constant_outputs(tmp_path / "detr.onnx", "input", [1, 3, 56, 56], {"labels": [1, 20, 4], "dets": [1, 20, 4]})
    code, output = add(model, "--classes", "a,b,c")
    assert code == 0, output
    stored = manifest(home)
    assert stored["family"] == "rfdetr" and stored["task"] == "object-detection" and stored["resize"] == "stretch"
    code, output = add(model, "--classes", "a,b", "--force")
    assert code == 1 and "4 class logits but 2 class names" in output


def test_unknown_family_is_refused(home: Path) -> None:
    code, output = add(MODELS / "shapes-detect.onnx", "--family", "detectron")
    assert code == 1 and "unknown model family" in output
