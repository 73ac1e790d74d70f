"""Classifiers from a weights API (`vit`, `resnet18`, `yolov8n-cls`, no type at all) and multi-label ones, through
the real server, class by class against the reference's pre-processing for each type computed here (cv2 float32
stretch, RGB, /255, mean/std by type) + onnxruntime, and against torch's own answers on the tiny ViT exports
(tools/make_family_fixtures.py, tests/fixtures/families/expected.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from tests.conftest import FIXTURES, SCORE_TOLERANCE, Server
from tests.fake_weights_api import CatalogModel, FakeWeightsApi, environment
from tests.test_families import EXPECTED, FAMILIES, infer
from visionserve.cli import app

NAMES = ["circle", "square", "triangle"]
IMAGES = list(EXPECTED["torchvision-vit-tiny.onnx"]["images"])
VIT = FAMILIES / "torchvision-vit-tiny.onnx"
VIT_SIGMOID = FAMILIES / "torchvision-vit-tiny-sigmoid.onnx"
MOBILENET = FAMILIES / "torchvision-mobilenet_v3_small.onnx"
SHAPES_CLASSIFY = FIXTURES / "models/shapes-classify.onnx"
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CATALOG = {  # model id → (weights, model type, input side, multi-label, the reference's mean and std for the type)
    "vit/1": (VIT, "vit", 224, False, HALF),
    "untyped/1": (VIT, None, 224, False, HALF),  # the reference's default classifier type is vit
    "vit-multi/1": (VIT_SIGMOID, "vit", 224, True, HALF),
    "vit-multi-logits/1": (VIT, "vit", 224, True, HALF),
    "classifiers/1": (MOBILENET, "resnet18", 224, False, IMAGENET),  # what the alias resnet18 names
    "resnet50/3": (MOBILENET, "resnet50", 224, False, IMAGENET),
    "cls/1": (SHAPES_CLASSIFY, "yolov8n-cls", 160, False, HALF),  # the reference's base default, as for ViT
}


def reference_scores(model_id: str, image: str) -> np.ndarray:
    """The reference's legacy classifier path, written out: "Stretch to" the input with cv2 on float32 BGR
    pixels, RGB, /255, (x - mean) / std; then onnxruntime and softmax of logits, or a sigmoid of multi-label
    logits (the inference_models path's; the legacy one reports raw logits)."""
    weights, _, side, multilabel, (mean, std) = CATALOG[model_id]
    pixels = cv2.resize(cv2.imread(str(FIXTURES / "images" / image)).astype(np.float32), (side, side))
    tensor = ((pixels[:, :, ::-1] / 255.0 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    session = ort.InferenceSession(str(weights), providers=["CPUExecutionProvider"])
    scores = session.run(None, {session.get_inputs()[0].name: tensor})[0][0].astype(np.float64)
    if multilabel:
        return scores if weights == VIT_SIGMOID else 1 / (1 + np.exp(-scores))
    if weights == SHAPES_CLASSIFY:  # Ultralytics' head ends in softmax; the reference's second one is not copied
        return scores
    exponentials = np.exp(scores - scores.max())
    return exponentials / exponentials.sum()


@pytest.fixture(scope="module")
def api() -> Iterator[FakeWeightsApi]:
    catalog = {}
    for model_id, (weights, model_type, side, multilabel, _) in CATALOG.items():
        package = {**environment(NAMES, "Stretch to", side), "MULTICLASS": multilabel}
        catalog[model_id] = CatalogModel(weights=weights.read_bytes(), environment=package, classes=None,
                                         task="classification", model_type=model_type)  # type: ignore[arg-type]
    fake = FakeWeightsApi(catalog)
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the sigmoid ViT added as a bare file, declared multi-label with the ViT's normalisation."""
    home = tmp_path_factory.mktemp("classifiers-home")
    flags = ["--multilabel", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--resize", "stretch"]
    result = CliRunner().invoke(app, ["models", "add", str(VIT_SIGMOID), "--id", "bare-multi/1", "--classes",
                                      ",".join(NAMES), *flags], env={"VISIONSERVE_HOME": str(home)})
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture(scope="module")
def http(home: Path, api: FakeWeightsApi) -> Iterator[httpx.Client]:
    server = Server(home, {"VISIONSERVE_WEIGHTS_API": api.url}).start()
    with server.client() as client:
        yield client
    server.stop()


@pytest.mark.parametrize("model_id", ["vit/1", "untyped/1", "resnet18", "resnet50/3", "cls/1"])
@pytest.mark.parametrize("image", IMAGES)
def test_single_label_equals_the_reference_preprocessing(http: httpx.Client, model_id: str, image: str) -> None:
    expected = reference_scores(CATALOG.get(model_id) and model_id or "classifiers/1", image)
    (answer,) = infer(http, "/infer/classification", model_id, [image], confidence=0.0)
    mine = {prediction["class_id"]: prediction["confidence"] for prediction in answer["predictions"]}
    assert [mine[index] for index in range(3)] == pytest.approx(expected.tolist(), abs=1e-4)  # 4 decimals
    assert answer["top"] == NAMES[int(expected.argmax())]
    if CATALOG.get(model_id, (None,))[0] == VIT:
        torch_scores = EXPECTED[VIT.name]["images"][image]
        assert expected.tolist() == pytest.approx(torch_scores, abs=SCORE_TOLERANCE)


@pytest.mark.parametrize("model_id", ["vit-multi/1", "vit-multi-logits/1", "bare-multi/1"])
@pytest.mark.parametrize("image", IMAGES)
def test_multilabel_equals_the_models_own_scores(http: httpx.Client, model_id: str, image: str) -> None:
    expected = reference_scores(CATALOG.get(model_id) and model_id or "vit-multi/1", image)
    if model_id != "vit-multi-logits/1":
        torch_scores = EXPECTED[VIT_SIGMOID.name]["images"][image]
        assert expected.tolist() == pytest.approx(torch_scores, abs=SCORE_TOLERANCE)
    (answer,) = infer(http, "/infer/classification", model_id, [image], confidence=0.5)
    assert answer["predictions"] == {
        name: {"confidence": pytest.approx(float(score), abs=1e-5), "class_id": index}  # onnxruntime here too
        for index, (name, score) in enumerate(zip(NAMES, expected))
    }
    assert answer["predicted_classes"] == [name for name, score in zip(NAMES, expected) if score > 0.5]


def test_sigmoid_scores_are_neither_all_above_nor_all_below_the_threshold() -> None:
    """The multi-label checks above tell classes apart: some scores pass 0.5, some do not."""
    scores = np.array([EXPECTED[VIT_SIGMOID.name]["images"][image] for image in IMAGES])
    assert 0 < (scores > 0.5).sum() < scores.size


@pytest.mark.parametrize("model_id", ["vit/1", "classifiers/1", "vit-multi/1"])
def test_stored_manifests_record_the_types_normalisation(http: httpx.Client, home: Path, model_id: str) -> None:
    infer(http, "/infer/classification", model_id, [IMAGES[0]])
    manifest = json.loads((home / "models" / model_id / "manifest.json").read_text())
    mean, std = CATALOG[model_id][4]
    assert manifest["normalization"] == {"mean": list(mean), "std": list(std)}
    assert (manifest["resize"], manifest["multilabel"]) == ("stretch", CATALOG[model_id][3])


def test_multilabel_flag_is_refused_for_a_detector(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "add", str(FIXTURES / "models/shapes-detect.onnx"), "--id", "d/1",
                                      "--multilabel"], env={"VISIONSERVE_HOME": str(tmp_path)})
    assert result.exit_code != 0 and "--multilabel is for classifiers" in result.output


def test_plain_classifier_error_names_the_multilabel_flag(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "add", str(VIT_SIGMOID), "--id", "v/1", "--classes", ",".join(NAMES)],
                                env={"VISIONSERVE_HOME": str(tmp_path)})
    assert result.exit_code != 0 and "--normalize" in result.output and "--multilabel" in result.output


@pytest.mark.parametrize(("model_type", "normalization"), [("resnet50", IMAGENET), ("vit", HALF)])
def test_a_roboflow_package_folder_takes_its_types_normalisation(
    tmp_path: Path, model_type: str, normalization: tuple
) -> None:
    """A classifier package as the reference caches it: best.onnx, environment.json (CLASS_MAP) and model_type.json."""
    folder = tmp_path / "package"
    folder.mkdir()
    (folder / "best.onnx").write_bytes(MOBILENET.read_bytes())
    (folder / "environment.json").write_text(json.dumps(environment(NAMES, "Stretch to", 224)))
    recorded = {"project_task_type": "classification", "model_type": model_type, "model_id": "pkg/1"}
    (folder / "model_type.json").write_text(json.dumps(recorded))
    result = CliRunner().invoke(app, ["models", "add", str(folder), "--id", "pkg/1"],
                                env={"VISIONSERVE_HOME": str(tmp_path / "home")})
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "home/models/pkg/1/manifest.json").read_text())
    assert manifest["normalization"] == {"mean": list(normalization[0]), "std": list(normalization[1])}
    assert (manifest["model_type"], manifest["resize"]) == (model_type, "stretch")
