"""RF-DETR through the real server, checked box by box (and mask by mask) against the rfdetr package's own
`predict()` on the same ONNX outputs (tools/make_rfdetr_fixtures.py, built by `make test` into a cache folder)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SCORE_TOLERANCE, Server, b64
from tests.fake_weights_api import CatalogModel, FakeWeightsApi, environment
from tests.test_official_sdk import official_client
from tests.test_rle import decode as decode_rle
from visionserve.cli import app
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore

ROOT = Path(__file__).parent.parent
FOLDER = os.environ.get("VISIONSERVE_RFDETR_FIXTURES")
if not FOLDER:
    if os.environ.get("CI"):
        raise RuntimeError("VISIONSERVE_RFDETR_FIXTURES is not set: run the suite with `make test`, which builds them")
    pytest.skip("RF-DETR fixtures not built: run `make test` (or `make rfdetr-fixtures`)", allow_module_level=True)
FIXTURES = Path(FOLDER)
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
MASKS = np.load(FIXTURES / "masks.npz")
SHAPES = ["circle", "square", "triangle"]
COCO_NAMES = EXPECTED["models"]["rfdetr-nano-detect-coco"]["class_names"]
MODELS = {  # model id → (fixture model, class names given to `models add`)
    "rfdetr-nano/1": ("rfdetr-nano-detect", SHAPES),
    "rfdetr-nano-dynamic/1": ("rfdetr-nano-detect-dynamic", SHAPES),
    "rfdetr-coco/1": ("rfdetr-nano-detect-coco", COCO_NAMES),
    "rfdetr-seg/1": ("rfdetr-seg-nano", SHAPES),
}


def weights(fixture: str) -> Path:
    return FIXTURES / EXPECTED["models"][fixture]["file"]


@pytest.fixture(scope="module")
def rfdetr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("rfdetr-home")
    store = ModelStore(home / "models")
    for model_id, (fixture, names) in MODELS.items():  # as `models add FILE --classes ...` does: no --task
        import_model(store, weights(fixture), model_id, ManifestOverrides(class_names=names))
    running = Server(home).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(rfdetr_server: Server) -> Iterator[httpx.Client]:
    with rfdetr_server.client() as client:
        yield client


def image_bytes(image: str) -> bytes:
    return (ROOT / EXPECTED["images"][image]["file"]).read_bytes()


def infer(http: httpx.Client, route: str, model_id: str, images: list[str], **options: object) -> list[dict]:
    values = [{"type": "base64", "value": b64(image_bytes(name))} for name in images]
    body = {"model_id": model_id, "image": values if len(values) > 1 else values[0], **options}
    response = http.post(route, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    return answer if isinstance(answer, list) else [answer]


def rfdetr_answers(fixture: str, image: str, names: list[str]) -> list[tuple[int, dict]]:
    """rfdetr's own results (rank, result) that a server answers: rfdetr's predict also ranks the unused extra
    logit slot of a custom model and the 11 COCO ids that name no category, which the server never answers."""
    return [(rank, result) for rank, result in enumerate(EXPECTED["predictions"][fixture][image])
            if result["class_name"] in names and (len(names) == 80 or result["class_id"] < len(names))]


def corners(prediction: dict) -> list[float]:
    x, y, w, h = (prediction[key] for key in ("x", "y", "width", "height"))
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


def assert_same_boxes(mine: list[dict], theirs: list[tuple[int, dict]]) -> None:
    """Rank by rank: the same class, the same score, the same box (the server rounds to whole pixels)."""
    assert len(mine) >= len(theirs) > 0
    for prediction, (_, result) in zip(mine, theirs):
        assert prediction["class"] == result["class_name"]
        assert prediction["confidence"] == pytest.approx(result["score"], abs=SCORE_TOLERANCE)
        assert np.abs(np.array(corners(prediction)) - result["xyxy"]).max() <= 0.51


@pytest.mark.parametrize("model_id", ["rfdetr-nano/1", "rfdetr-coco/1"])
@pytest.mark.parametrize("image", list(EXPECTED["images"]))
def test_detections_equal_rfdetr_predict(http: httpx.Client, model_id: str, image: str) -> None:
    fixture, names = MODELS[model_id]
    (answer,) = infer(http, "/infer/object_detection", model_id, [image], confidence=0.0, max_detections=100)
    assert answer["image"] == {"width": EXPECTED["images"][image]["width"], "height": EXPECTED["images"][image]["height"]}
    assert all(prediction["class"] in names for prediction in answer["predictions"])
    assert_same_boxes(answer["predictions"], rfdetr_answers(fixture, image, names))


def test_a_batch_on_the_dynamic_export_equals_single_images(http: httpx.Client) -> None:
    images = ["detect_0", "detect_4", "detect_5"]
    batch = infer(http, "/infer/object_detection", "rfdetr-nano-dynamic/1", images, confidence=0.0, max_detections=100)
    assert len(batch) == 3
    for answer, image in zip(batch, images):
        assert_same_boxes(answer["predictions"], rfdetr_answers("rfdetr-nano-detect-dynamic", image, SHAPES))
    on_static = infer(http, "/infer/object_detection", "rfdetr-nano/1", images, confidence=0.0, max_detections=100)
    for a, b in zip(batch, on_static):
        assert [p["class"] for p in a["predictions"]] == [p["class"] for p in b["predictions"]]


def test_confidence_class_filter_and_max_detections(http: httpx.Client) -> None:
    (answer,) = infer(http, "/infer/object_detection", "rfdetr-nano/1", ["detect_0"], confidence=0.1,
                      max_detections=5, class_filter=["triangle"])
    predictions = answer["predictions"]
    assert 0 < len(predictions) <= 5
    assert all(p["class"] == "triangle" and p["confidence"] > 0.1 for p in predictions)


def mask_of(fixture: str, image: str, rank: int) -> np.ndarray:
    width = EXPECTED["images"][image]["width"]
    return np.unpackbits(MASKS[f"{fixture}/{image}/{rank}"], axis=-1, count=width).astype(bool)


@pytest.mark.parametrize("image", ["segment_0", "segment_1", "detect_4"])
def test_segmentation_masks_equal_rfdetr_predict(http: httpx.Client, image: str) -> None:
    (answer,) = infer(http, "/infer/instance_segmentation", "rfdetr-seg/1", [image], confidence=0.0,
                      max_detections=100, response_mask_format="rle")
    # Detections whose mask is empty anywhere in the image are not answered (nothing to outline).
    theirs = [(rank, result) for rank, result in rfdetr_answers("rfdetr-seg-nano", image, SHAPES)
              if mask_of("rfdetr-seg-nano", image, rank).any()]
    assert_same_boxes(answer["predictions"], theirs)
    for prediction, (rank, _) in zip(answer["predictions"], theirs):
        mine, expected = decode_rle(prediction["rle"]), mask_of("rfdetr-seg-nano", image, rank)
        assert (mine & expected).sum() / (mine | expected).sum() >= 0.999


def test_segmentation_polygons_outline_the_same_masks(http: httpx.Client) -> None:
    (answer,) = infer(http, "/infer/instance_segmentation", "rfdetr-seg/1", ["segment_0"], confidence=0.2)
    assert answer["predictions"]
    for prediction in answer["predictions"]:
        assert prediction["mask_format"] == "polygon" and len(prediction["points"]) >= 3


def test_segmentation_masks_are_charged_to_the_request_budget(start_server, tmp_path: Path, http: httpx.Client) -> None:
    """A caller choosing confidence 0 and many detections must not choose the server's CPU time, as for YOLO."""
    (answer,) = infer(http, "/infer/instance_segmentation", "rfdetr-seg/1", ["segment_0"], confidence=0.0,
                      max_detections=100, response_mask_format="rle")
    assert answer["predictions"]  # within the default budget
    home = tmp_path / "home"
    import_model(ModelStore(home / "models"), weights("rfdetr-seg-nano"), "rfdetr-seg/1",
                 ManifestOverrides(class_names=SHAPES))
    tight = start_server({"VISIONSERVE_MAX_MASK_PIXELS": "2000"}, home=home)
    with tight.client() as small_budget:
        refused = small_budget.post("/infer/instance_segmentation", json={
            "model_id": "rfdetr-seg/1", "image": {"type": "base64", "value": b64(image_bytes("segment_0"))},
            "confidence": 0.0, "max_detections": 100, "response_mask_format": "rle"})
        assert refused.status_code == 400, refused.text
        assert "VISIONSERVE_MAX_MASK_PIXELS" in refused.json()["message"]
        (after,) = infer(small_budget, "/infer/instance_segmentation", "rfdetr-seg/1", ["segment_0"],
                         confidence=0.999)  # the server and its model stay intact
        assert after["predictions"] == []


def test_a_roboflow_package_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http: httpx.Client) -> None:
    """A package as Roboflow's cache holds it: weights.onnx, environment.json, class_names.txt, model_type.json."""
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path / "home"))
    package = tmp_path / "package"
    package.mkdir()
    (package / "weights.onnx").symlink_to(weights("rfdetr-nano-detect"))
    (package / "environment.json").write_text(json.dumps(environment(SHAPES, "Stretch to", size=640)))
    (package / "class_names.txt").write_text("\n".join(SHAPES))
    (package / "model_type.json").write_text(json.dumps({"project_task_type": "object-detection",
                                                          "model_type": "rfdetr-nano"}))
    result = CliRunner().invoke(app, ["models", "add", str(package), "--id", "pkg/1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "home/models/pkg/1/manifest.json").read_text())
    assert manifest["family"] == "rfdetr" and manifest["input_size"] is None and manifest["resize"] == "stretch"


@pytest.fixture
def rfdetr_api() -> Iterator[FakeWeightsApi]:
    detector = weights("rfdetr-nano-detect").read_bytes()
    api = FakeWeightsApi({
        "parts/2": CatalogModel(weights=detector, environment=environment(SHAPES, "Stretch to", size=384),
                                classes=SHAPES, model_type="rfdetr-nano"),
    })
    yield api
    api.close()


def test_the_weights_api_serves_rfdetr(start_server, rfdetr_api: FakeWeightsApi) -> None:
    server = start_server({"VISIONSERVE_WEIGHTS_API": rfdetr_api.url, "VISIONSERVE_ALLOW_REMOTE_MODELS": "1"})
    with server.client() as client:
        (answer,) = infer(client, "/infer/object_detection", "parts/2", ["detect_4"], confidence=0.0, max_detections=100)
    assert_same_boxes(answer["predictions"], rfdetr_answers("rfdetr-nano-detect", "detect_4", SHAPES))
    assert rfdetr_api.count("download parts/2") == 1


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rfdetr-photos")
    return {name: Path(shutil.copy(ROOT / EXPECTED["images"][name]["file"], folder)) for name in EXPECTED["images"]}


def test_the_official_client_and_supervision_read_detections(rfdetr_server: Server, http: httpx.Client,
                                                             photos: dict[str, Path]) -> None:
    names = ["detect_0", "detect_4"]
    output = official_client(rfdetr_server, "rfdetr-nano/1", [photos[n] for n in names], "--confidence", "0.1")
    for item, name in zip(output["results"], names):
        (ours,) = infer(http, "/infer/object_detection", "rfdetr-nano/1", [name], confidence=0.1)
        assert [p["class"] for p in item["result"]["predictions"]] == [p["class"] for p in ours["predictions"]]
        assert item["detections"]["class_name"] == [p["class"] for p in ours["predictions"]]
        for box, prediction in zip(item["detections"]["xyxy"], ours["predictions"]):
            assert box == pytest.approx(corners(prediction))


def test_the_official_client_and_supervision_read_masks(rfdetr_server: Server, photos: dict[str, Path]) -> None:
    output = official_client(rfdetr_server, "rfdetr-seg/1", [photos["segment_0"], photos["segment_1"]],
                             "--confidence", "0.15")
    for item in output["results"]:
        predictions = item["result"]["predictions"]
        assert predictions and all(p["mask_format"] == "polygon" for p in predictions)
        assert len(item["detections"]["mask_pixels"]) == len(predictions)
        assert all(count > 0 for count in item["detections"]["mask_pixels"])
