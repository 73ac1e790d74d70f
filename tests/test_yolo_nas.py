"""YOLO-NAS through the real server: super-gradients' own exports (tools/make_yolo_nas_fixtures.py), raw and with
NMS in the graph, added as bare files and fetched from a weights API as `yolo_nas_s`, box by box against
super-gradients' own predict() (raw export) and onnxruntime's rows of the in-graph NMS (tests/fixtures/yolo_nas)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import FIXTURES, Server
from tests.fake_weights_api import CatalogModel, FakeWeightsApi, environment
from tests.onnx_edit import constant_outputs
from tests.test_families import assert_same_boxes, infer
from visionserve.cli import app

NAS = FIXTURES / "yolo_nas"
EXPECTED = json.loads((NAS / "expected.json").read_text())
NAMES = EXPECTED["names"]
FILES = {"raw/1": "yolo-nas-tiny.onnx", "flat/1": "yolo-nas-tiny-flat.onnx", "batch/1": "yolo-nas-tiny-batch.onnx"}


@pytest.fixture(scope="module")
def api() -> Iterator[FakeWeightsApi]:
    package = {"weights": (NAS / FILES["raw/1"]).read_bytes(), "task": "object-detection", "classes": NAMES,
               "environment": environment(NAMES, "Fit (grey edges) in", EXPECTED["size"])}
    fake = FakeWeightsApi({"coco/14": CatalogModel(model_type="yolo_nas_s", **package),
                           "nas-dashed/2": CatalogModel(model_type="yolo-nas-m", **package)})
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def nas_server(tmp_path_factory: pytest.TempPathFactory, api: FakeWeightsApi) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("yolo-nas-home")
    for model_id, file in FILES.items():  # no --family: the outputs tell
        command = ["models", "add", str(NAS / file), "--id", model_id, "--classes", ",".join(NAMES)]
        result = CliRunner().invoke(app, command, env={"VISIONSERVE_HOME": str(home)})
        assert result.exit_code == 0, result.output
    server = Server(home, {"VISIONSERVE_WEIGHTS_API": api.url}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(nas_server: Server) -> Iterator[httpx.Client]:
    with nas_server.client() as client:
        yield client


def by_score(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: -row["score"])


@pytest.mark.parametrize("model_id", ["raw/1", "yolo-nas-s-640", "nas-dashed/2"])
@pytest.mark.parametrize("image", list(EXPECTED["yolo-nas-tiny.onnx"]["predict"]))
def test_raw_export_equals_super_gradients_predict(http: httpx.Client, model_id: str, image: str) -> None:
    expected = EXPECTED["yolo-nas-tiny.onnx"]["predict"][image]  # class-aware NMS, one class per box
    (answer,) = infer(http, "/infer/object_detection", model_id, [image], confidence=EXPECTED["conf"],
                      iou_threshold=EXPECTED["iou"])
    assert_same_boxes(answer, expected)  # mapped back by the letterbox ratio, as super-gradients maps them


@pytest.mark.parametrize("model_id", ["flat/1", "batch/1"])
@pytest.mark.parametrize("image", list(EXPECTED["yolo-nas-tiny-flat.onnx"]["onnxruntime"]))
def test_in_graph_nms_exports_answer_the_graph_rows(http: httpx.Client, model_id: str, image: str) -> None:
    expected = by_score(EXPECTED[FILES[model_id]]["onnxruntime"][image])
    (answer,) = infer(http, "/infer/object_detection", model_id, [image], confidence=0.0)
    assert_same_boxes(answer, expected)  # mapped back by the letterbox ratio, as super-gradients maps them
    (strict,) = infer(http, "/infer/object_detection", model_id, [image], confidence=0.3, max_detections=3)
    assert_same_boxes(strict, [row for row in expected if row["score"] >= 0.3][:3])


@pytest.mark.parametrize("model_id", ["raw/1", "flat/1", "batch/1"])
def test_a_batch_answers_each_image_as_alone(http: httpx.Client, model_id: str) -> None:
    images = list(EXPECTED["yolo-nas-tiny.onnx"]["predict"])
    together = infer(http, "/infer/object_detection", model_id, images, confidence=0.3)
    for image, answer in zip(images, together):
        (alone,) = infer(http, "/infer/object_detection", model_id, [image], confidence=0.3)
        assert [p["class_id"] for p in answer["predictions"]] == [p["class_id"] for p in alone["predictions"]]
        assert [p["confidence"] for p in answer["predictions"]] == [p["confidence"] for p in alone["predictions"]]


def test_exports_and_weights_api_models_are_stored_as_yolo_nas(nas_server: Server, http: httpx.Client) -> None:
    infer(http, "/infer/object_detection", "yolo-nas-s-640", [next(iter(EXPECTED["yolo-nas-tiny.onnx"]["predict"]))])
    for model_id in [*FILES, "coco/14"]:
        manifest = json.loads((nas_server.home / "models" / model_id / "manifest.json").read_text())
        assert (manifest["family"], manifest["task"]) == ("yolo-nas", "object-detection"), model_id
    assert json.loads((nas_server.home / "models/coco/14/manifest.json").read_text())["model_type"] == "yolo_nas_s"


def test_a_roboflow_package_folder_is_recognised_as_yolo_nas(tmp_path: Path) -> None:
    """A package as the reference caches it, without model_type.json: the outputs tell family and task."""
    folder = tmp_path / "package"
    folder.mkdir()
    (folder / "weights.onnx").write_bytes((NAS / FILES["raw/1"]).read_bytes())
    (folder / "environment.json").write_text(json.dumps(environment(NAMES, "Fit (grey edges) in", EXPECTED["size"])))
    (folder / "class_names.txt").write_text("\n".join(NAMES))
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["models", "add", str(folder), "--id", "pkg/1"],
                                env={"VISIONSERVE_HOME": str(home)})
    assert result.exit_code == 0, result.output
    manifest = json.loads((home / "models/pkg/1/manifest.json").read_text())
    assert (manifest["family"], manifest["task"], manifest["pad_value"]) == ("yolo-nas", "object-detection", 114)


def test_two_outputs_of_logits_are_not_taken_for_yolo_nas(tmp_path: Path) -> None:
    """Boxes [1, N, 4] and scores [1, N, C] with negative scores (a DETR-style head's logits, e.g. an RF-DETR export
    whose outputs were renamed) are refused, never decoded as YOLO-NAS."""
    rng = np.random.default_rng(0)
    outputs = {"boxes": rng.random((1, 300, 4), dtype=np.float32),
               "logits": rng.normal(size=(1, 300, 3)).astype(np.float32)}
    path = constant_outputs(tmp_path / "renamed.onnx", "input", [1, 3, 320, 320], outputs)
    result = CliRunner().invoke(app, ["models", "add", str(path), "--id", "x/1", "--classes", ",".join(NAMES)],
                                env={"VISIONSERVE_HOME": str(tmp_path / "home")})
    assert result.exit_code != 0 and "not probabilities" in result.output and "--family" in result.output
