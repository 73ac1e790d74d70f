"""`visionserve models add CHECKPOINT`: genuine training checkpoints (Ultralytics best.pt, RF-DETR
checkpoint_best_total.pth; tools/make_checkpoint_fixtures.py, built by `make test` into a cache folder) exported by
their own package in a child Python (VISIONSERVE_EXPORT_PYTHON, the fixtures' venv), then served and compared box
by box with each family's own predict() on the checkpoint itself. The test venv has no torch."""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SCORE_TOLERANCE, Server, b64
from tests.test_rle import decode as decode_rle
from visionserve.cli import app

ROOT = Path(__file__).parent.parent
FOLDER, EXPORT_PYTHON = os.environ.get("VISIONSERVE_CHECKPOINT_FIXTURES"), os.environ.get("VISIONSERVE_EXPORT_PYTHON")
if not FOLDER or not EXPORT_PYTHON:
    if os.environ.get("CI"):
        raise RuntimeError("VISIONSERVE_CHECKPOINT_FIXTURES / VISIONSERVE_EXPORT_PYTHON unset: run `make test`")
    pytest.skip("checkpoint fixtures not built: run `make test` (or `make checkpoint-fixtures`)",
                allow_module_level=True)
FIXTURES = Path(FOLDER)
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
MODELS = EXPECTED["models"]
MASKS = np.load(FIXTURES / "masks.npz")
IDS = {name: f"{name}/1" for name in MODELS}
SHAPES = ["circle", "square", "triangle"]
ROUTES = {"detect": "/infer/object_detection", "pose": "/infer/keypoints_detection",
          "segment": "/infer/instance_segmentation"}  # fmt: skip


def add(home: Path, checkpoint: Path, *flags: str, python: str | None = EXPORT_PYTHON) -> tuple[int, str]:
    env = {"VISIONSERVE_HOME": str(home), "YOLO_CONFIG_DIR": str(home / "yolo-config"),
           "VISIONSERVE_EXPORT_PYTHON": python}  # fmt: skip
    result = CliRunner().invoke(app, ["models", "add", str(checkpoint), *flags], env=env)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def added(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Every checkpoint added as a user would: no flags but the id. Its home and `models add` output."""
    home = tmp_path_factory.mktemp("checkpoints-home")
    outputs = {}
    for name, model in MODELS.items():
        code, output = add(home, FIXTURES / model["file"], "--id", IDS[name])
        assert code == 0, output
        outputs[name] = output
    return {name: (home, output) for name, output in outputs.items()}


@pytest.fixture(scope="module")
def http(added: dict[str, tuple[Path, str]]) -> Iterator[httpx.Client]:
    (home, _), *_ = added.values()
    running = Server(home).start()
    with running.client() as client:
        yield client
    running.stop()


def infer(http: httpx.Client, name: str, image: str, **options: object) -> dict:
    body = {"model_id": IDS[name], "image": {"type": "base64", "value": b64(image_path(image).read_bytes())}}
    response = http.post(ROUTES[MODELS[name]["task"]], json={**body, **options})
    assert response.status_code == 200, response.text
    return response.json()


def image_path(image: str) -> Path:
    return ROOT / "tests" / "fixtures" / "images" / f"{image}.jpg"


def corners(prediction: dict) -> np.ndarray:
    x, y, w, h = (prediction[key] for key in ("x", "y", "width", "height"))
    return np.array([x - w / 2, y - h / 2, x + w / 2, y + h / 2])


def assert_same(mine: list[dict], theirs: list[dict], names: list[str]) -> None:
    """Rank by rank: class, score (PyTorch on the checkpoint vs onnxruntime on its export), box in whole pixels."""
    assert len(mine) == len(theirs) > 0
    for prediction, row in zip(mine, theirs):
        assert prediction["class_id"] == row["class_id"] and prediction["class"] == names[row["class_id"]]
        assert prediction["confidence"] == pytest.approx(row["score"], abs=SCORE_TOLERANCE)
        assert np.abs(corners(prediction) - row["xyxy"]).max() <= 0.51


def test_the_add_says_what_it_exports_and_reads_the_checkpoint(added: dict[str, tuple[Path, str]]) -> None:
    for name, (home, output) in added.items():
        package = "rfdetr" if name.startswith("rfdetr") else "ultralytics"
        assert f"exporting {MODELS[name]['file']} to ONNX with {package}" in output and "exported in" in output
        manifest = json.loads((home / "models" / name / "1" / "manifest.json").read_text())
        assert manifest["class_names"] == MODELS[name]["class_names"]
        task = {"detect": "object-detection", "pose": "keypoint-detection", "segment": "instance-segmentation"}
        assert manifest["task"] == task[MODELS[name]["task"]]
        assert manifest["family"] == ("rfdetr" if package == "rfdetr" else "yolo")
        size = MODELS[name].get("resolution", EXPECTED["imgsz"])
        assert manifest["input_size"] in (None, [size, size]) and manifest["source"].endswith(MODELS[name]["file"])


@pytest.mark.parametrize(("name", "image"), [(name, image) for name in ("yolo-detect", "yolo-pose")
                                             for image in MODELS[name]["predictions"]])  # fmt: skip
def test_ultralytics_checkpoints_equal_their_predict(http: httpx.Client, name: str, image: str) -> None:
    answer = infer(http, name, image, confidence=EXPECTED["conf"], iou_threshold=EXPECTED["iou"])
    theirs = MODELS[name]["predictions"][image]
    assert_same(answer["predictions"], theirs, MODELS[name]["class_names"])
    for prediction, row in zip(answer["predictions"], theirs):
        for point, (x, y, confidence) in zip(prediction.get("keypoints", []), row.get("keypoints", [])):
            assert abs(point["x"] - x) <= 0.51 and abs(point["y"] - y) <= 0.51
            assert point["confidence"] == pytest.approx(confidence, abs=SCORE_TOLERANCE)
        assert len(prediction.get("keypoints", [])) == sum(c > 0 for *_, c in row.get("keypoints", []))


def test_an_ultralytics_checkpoint_exports_at_a_non_square_size(tmp_path: Path) -> None:
    """`--imgsz HEIGHT,WIDTH`: Ultralytics' export at that size, served box for box as its own `predict()` at
    that size letterboxes; RF-DETR exports square only and says so before any export starts."""
    height, width = EXPECTED["rect_imgsz"]
    model = MODELS["yolo-detect"]
    code, output = add(tmp_path, FIXTURES / model["file"], "--id", "wide/1", "--imgsz", f"{height},{width}")
    assert code == 0, output
    manifest = json.loads((tmp_path / "models/wide/1/manifest.json").read_text())
    assert manifest["input_size"] == [height, width]
    running = Server(tmp_path).start()
    try:
        with running.client() as client:
            for image, theirs in model["rect_predictions"].items():
                body = {"model_id": "wide/1", "image": {"type": "base64", "value": b64(image_path(image).read_bytes())},
                        "confidence": EXPECTED["conf"], "iou_threshold": EXPECTED["iou"]}  # fmt: skip
                response = client.post("/infer/object_detection", json=body)
                assert response.status_code == 200, response.text
                assert_same(response.json()["predictions"], theirs, model["class_names"])
    finally:
        running.stop()
    code, output = add(tmp_path, FIXTURES / MODELS["rfdetr-nano"]["file"], "--id", "m/1", "--imgsz", "224,448",
                       python="/nonexistent/python")
    assert code == 1 and "RF-DETR is exported at one square resolution; pass --imgsz N" in " ".join(output.split())


def rfdetr_rows(name: str, image: str) -> list[tuple[int, dict]]:
    """rfdetr's results (rank, row) a server answers: not the unused extra logit slot of a 3-class model."""
    names = MODELS[name]["class_names"]
    return [(rank, row) for rank, row in enumerate(MODELS[name]["predictions"][image]) if row["class_id"] < len(names)]


@pytest.mark.parametrize("image", list(MODELS["rfdetr-nano"]["predictions"]))
def test_an_rfdetr_checkpoint_equals_its_predict(http: httpx.Client, image: str) -> None:
    answer = infer(http, "rfdetr-nano", image, confidence=0.0, max_detections=100)
    theirs = [row for _, row in rfdetr_rows("rfdetr-nano", image)]
    assert_same(answer["predictions"][: len(theirs)], theirs, MODELS["rfdetr-nano"]["class_names"])


@pytest.mark.parametrize("image", list(MODELS["rfdetr-seg-nano"]["predictions"]))
def test_an_rfdetr_segmentation_checkpoint_equals_its_predict(http: httpx.Client, image: str) -> None:
    answer = infer(http, "rfdetr-seg-nano", image, confidence=0.0, max_detections=100, response_mask_format="rle")
    width = image_width(image)
    masks = {rank: np.unpackbits(MASKS[f"rfdetr-seg-nano/{image}/{rank}"], axis=-1, count=width).astype(bool)
             for rank, _ in rfdetr_rows("rfdetr-seg-nano", image)}  # fmt: skip
    theirs = [(rank, row) for rank, row in rfdetr_rows("rfdetr-seg-nano", image) if masks[rank].any()]
    assert_same(answer["predictions"][: len(theirs)], [row for _, row in theirs], SHAPES)
    for prediction, (rank, _) in zip(answer["predictions"], theirs):
        mine = decode_rle(prediction["rle"])
        assert (mine & masks[rank]).sum() / (mine | masks[rank]).sum() >= 0.999


def image_width(image: str) -> int:
    from PIL import Image

    with Image.open(image_path(image)) as opened:
        return opened.width


def test_a_second_add_of_the_same_checkpoint_reuses_its_export(added: dict[str, tuple[Path, str]]) -> None:
    home, _ = added["rfdetr-nano"]
    started = time.monotonic()
    code, output = add(home, FIXTURES / MODELS["rfdetr-nano"]["file"], "--id", "again/1", python="/nonexistent/python")
    assert code == 0 and "using the ONNX exported earlier from this checkpoint" in output, output
    assert time.monotonic() - started < 30 and "exporting" not in output
    first, second = (json.loads((home / "models" / model_id / "manifest.json").read_text())
                     for model_id in ("rfdetr-nano/1", "again/1"))
    assert first["weights_sha256"] == second["weights_sha256"]


@pytest.mark.parametrize("name", ["yolo-detect", "rfdetr-nano"])
def test_without_the_package_the_message_names_the_extra(tmp_path: Path, name: str) -> None:
    code, output = add(tmp_path, FIXTURES / MODELS[name]["file"], "--id", "m/1", python=sys.executable)  # no torch
    package = "rfdetr" if name.startswith("rfdetr") else "ultralytics"
    error = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 1 and len(error) == 1 and f"pip install 'visionserve[{package}]'" in error[0], output
    assert "--export-python" in error[0]


def test_a_checkpoint_nobody_can_tell_is_refused_naming_the_flag(tmp_path: Path) -> None:
    """A torch.save-shaped zip whose pickle names neither package (made with the standard library)."""
    unknown = tmp_path / "weights.pt"
    with zipfile.ZipFile(unknown, "w") as archive:
        archive.writestr("weights/data.pkl", pickle.dumps({"state_dict": {"layer.weight": [0.0]}, "epoch": 3}))
    code, output = add(tmp_path, unknown, "--id", "m/1")
    assert code == 1 and "pass --family ultralytics or --family rfdetr" in " ".join(output.split())
    code, output = add(tmp_path, unknown, "--id", "m/1", "--family", "yolox")
    assert code == 1 and "yolox checkpoints cannot be exported here" in " ".join(output.split())
