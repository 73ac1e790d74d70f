"""Semantic segmentation through the real server, pixel by pixel against each family's own pipeline on the same
ONNX (tools/make_semantic_fixtures.py recorded them in tests/fixtures/families/semantic.json): a torchvision
LR-ASPP export (torchvision's preset, onnxruntime, bilinear logits, softmax), Ultralytics' YOLO26 semantic export
(its own predictor), and the same LR-ASPP served by a weights API as a Roboflow `deeplabv3plus` model."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from tests.browser_harness import assert_clean, browser, choose_model, open_page, run_detection
from tests.conftest import FIXTURES, Server, b64
from tests.fake_weights_api import CatalogModel, FakeWeightsApi, environment
from tests.test_oip import client_for, images_input
from visionserve.cli import app
from visionserve.tasks.semantic import classes_and_confidence

__all__ = ["browser", "open_page"]  # fixtures
FAMILIES = FIXTURES / "families"
EXPECTED = json.loads((FAMILIES / "semantic.json").read_text())
LRASPP = FAMILIES / "torchvision-lraspp-tiny.onnx"
SHAPES = ["circle", "square", "triangle"]
TORCHVISION_FLAGS = ["--task", "semantic", "--normalize", "imagenet", "--imgsz", "160"]
MODELS = {  # model id → (file, `models add` flags)
    "lraspp/1": (LRASPP, [*TORCHVISION_FLAGS, "--classes", ",".join(SHAPES)]),
    "lraspp-bg/1": (LRASPP, [*TORCHVISION_FLAGS, "--classes", "background,square,triangle"]),
    "yolo26-sem/1": (FAMILIES / "yolo26-sem-tiny.onnx", []),
}
MAX_DIFFERING = 0.005  # share of pixels whose class may differ (near-ties at class boundaries)


def add(home: Path, path: Path, model_id: str, *flags: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["models", "add", str(path), "--id", model_id, *flags],
                                env={"VISIONSERVE_HOME": str(home)})
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def semantic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("semantic-home")
    for model_id, (path, flags) in MODELS.items():
        code, output = add(home, path, model_id, *flags)
        assert code == 0, output
    running = Server(home).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(semantic_server: Server) -> Iterator[httpx.Client]:
    with semantic_server.client() as client:
        yield client


def image_body(name: str) -> dict[str, str]:
    return {"type": "base64", "value": b64((FIXTURES / "images" / name).read_bytes())}


def segment(http: httpx.Client, model_id: str, image: str, **options: object) -> dict:
    response = http.post("/infer/semantic_segmentation", json={"model_id": model_id, "image": image_body(image),
                                                               **options})
    assert response.status_code == 200, response.text
    return response.json()


def png(text: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(text), dtype=np.uint8), cv2.IMREAD_UNCHANGED)


def assert_same_map(answer: dict, expected: dict) -> np.ndarray:
    """The answer's class map equals the expected one but for near-ties, which must be few; returns the map."""
    theirs = png(expected["class_map_png"])
    mine = png(answer["predictions"]["segmentation_mask"])
    size = answer["image"]
    assert mine.dtype == np.uint8 and mine.shape == theirs.shape == (size["height"], size["width"])
    assert np.count_nonzero(np.bincount(theirs.ravel()) > 0.05 * theirs.size) >= 2  # not one class everywhere
    assert np.mean(mine != theirs) <= MAX_DIFFERING
    assert answer["predictions"]["present_class_ids"] == np.unique(mine).tolist()
    return mine


@pytest.mark.parametrize("image", list(EXPECTED[LRASPP.name]["images"]))
def test_torchvision_segmenter_equals_torchvision_pipeline(http: httpx.Client, image: str) -> None:
    expected = EXPECTED[LRASPP.name]["images"][image]
    answer = segment(http, "lraspp/1", image, confidence=0.0)
    assert set(answer) == {"inference_id", "time", "image", "predictions"}
    assert answer["predictions"]["class_map"] == {"0": "circle", "1": "square", "2": "triangle"}
    mine = assert_same_map(answer, expected)
    same = mine == png(expected["class_map_png"])
    confidence, theirs = png(answer["predictions"]["confidence_mask"]), png(expected["confidence_png"])
    assert np.abs(confidence.astype(int) - theirs)[same].max() <= 1  # both trunc(255 p); p agrees to float error


@pytest.mark.parametrize(("model_id", "uncertain_class"), [("lraspp/1", 255), ("lraspp-bg/1", 0)])
def test_pixels_under_the_confidence_become_background(http: httpx.Client, model_id: str, uncertain_class: int) -> None:
    everything = segment(http, model_id, "detect_4.jpg", confidence=0.0)["predictions"]
    kept = segment(http, model_id, "detect_4.jpg", confidence=0.6)["predictions"]
    all_classes, all_confidence = png(everything["segmentation_mask"]), png(everything["confidence_mask"])
    classes, confidence = png(kept["segmentation_mask"]), png(kept["confidence_mask"])
    sure, unsure = all_confidence >= 153, all_confidence < 152  # 0.6 * 255 = 153; trunc(255 p) hides the rest
    assert sure.any() and unsure.any()
    assert (classes[sure] == all_classes[sure]).all() and (confidence[sure] == all_confidence[sure]).all()
    assert (classes[unsure] == uncertain_class).all() and (confidence[unsure] == 0).all()
    assert uncertain_class in kept["present_class_ids"]


@pytest.mark.parametrize("image", list(EXPECTED["yolo26-sem-tiny.onnx"]["images"]))
def test_yolo26_semantic_export_equals_ultralytics_predictor(http: httpx.Client, image: str) -> None:
    answer = segment(http, "yolo26-sem/1", image, confidence=0.9)
    assert_same_map(answer, EXPECTED["yolo26-sem-tiny.onnx"]["images"][image])
    assert (png(answer["predictions"]["confidence_mask"]) == 255).all()  # the export keeps no scores


def test_a_batch_answers_each_image_as_alone(http: httpx.Client) -> None:
    images = ["detect_4.jpg", "detect_5.jpg"]  # different sizes: one forward pass each
    response = http.post("/infer/semantic_segmentation",
                         json={"model_id": "lraspp/1", "image": [image_body(name) for name in images]})
    assert response.status_code == 200, response.text
    for answer, name in zip(response.json(), images):
        assert answer["predictions"] == segment(http, "lraspp/1", name)["predictions"]


def test_dynamic_batching_with_images_of_their_own_input_size(start_server, tmp_path: Path) -> None:
    path, flags = MODELS["lraspp/1"]
    code, output = add(tmp_path / "home", path, "lraspp/1", *flags)
    assert code == 0, output
    server = start_server({"VISIONSERVE_DYNAMIC_BATCHING": "on"}, home=tmp_path / "home")
    images = list(EXPECTED[LRASPP.name]["images"]) * 2  # 160x160, 240x160 and 160x240 inputs at once
    with server.client() as client, ThreadPoolExecutor(len(images)) as pool:
        answers = list(pool.map(lambda name: segment(client, "lraspp/1", name, confidence=0.0), images))
    for answer, image in zip(answers, images):
        assert_same_map(answer, EXPECTED[LRASPP.name]["images"][image])


def test_legacy_route_answers_as_the_v2_route(http: httpx.Client) -> None:
    body = b64((FIXTURES / "images" / "detect_0.jpg").read_bytes())
    response = http.post("/lraspp/1", params={"confidence": 50}, content=body)  # 50 = 0.5 on this route
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == segment(http, "lraspp/1", "detect_0.jpg", confidence=0.5)["predictions"]
    drawn = http.post("/lraspp/1", params={"format": "image"}, content=body)
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(drawn.content, dtype=np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(FIXTURES / "images" / "detect_0.jpg"))
    assert picture.shape == original.shape and np.abs(picture.astype(int) - original).mean() > 10


def test_visualization_blends_the_class_map(http: httpx.Client) -> None:
    answer = segment(http, "lraspp-bg/1", "detect_0.jpg", visualize_predictions=True)
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(answer["visualization"]), np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(FIXTURES / "images" / "detect_0.jpg")).astype(int)
    classes = png(answer["predictions"]["segmentation_mask"])
    change = np.abs(picture.astype(int) - original).mean(axis=2)
    assert np.median(change[classes == 0]) < 3 < 20 < np.median(change[classes != 0])  # background: as it was


def test_the_open_inference_protocol_carries_the_maps(semantic_server: Server, http: httpx.Client) -> None:
    jpeg = (FIXTURES / "images" / "detect_0.jpg").read_bytes()
    oip = client_for(semantic_server)
    result = oip.infer("lraspp", [images_input([jpeg], True)], model_version="1", parameters={"confidence": 0.5})
    oip.close()
    (answer,) = result.as_numpy("predictions")
    route = segment(http, "lraspp/1", "detect_0.jpg", confidence=0.5)
    assert orjson.loads(answer)["predictions"] == route["predictions"]
    assert result.as_numpy("scores").shape == (0,)  # no rows: a map is not a list of predictions


def test_a_very_long_image_is_refused_short_side_and_answered_letterboxed(http: httpx.Client) -> None:
    strip = cv2.imencode(".png", np.zeros((16, 12_000, 3), np.uint8))[1].tobytes()  # short side 160: 120000 long
    response = http.post("/infer/semantic_segmentation",
                         json={"model_id": "lraspp/1", "image": {"type": "base64", "value": b64(strip)}})
    assert response.status_code == 400 and "120000x160, over the limit" in response.json()["message"]
    letterboxed = http.post("/infer/semantic_segmentation",  # fitted into 160x160: one input row
                            json={"model_id": "yolo26-sem/1", "image": {"type": "base64", "value": b64(strip)}})
    assert letterboxed.status_code == 200, letterboxed.text
    assert png(letterboxed.json()["predictions"]["segmentation_mask"]).shape == (16, 12_000)


def test_the_playground_names_the_classes_and_colours_the_map(semantic_server: Server, open_page) -> None:
    page, log = open_page(semantic_server, "/")
    choose_model(page, "lraspp-bg/1")
    assert page.locator("#iou").is_hidden()  # detection options do not apply
    result = run_detection(page, FIXTURES / "images" / "detect_0.jpg")["predictions"]
    assert page.inner_text("#summary") == ", ".join(result["class_map"][str(i)] for i in result["present_class_ids"])
    layer = "#overlay image.semantic-map"
    page.wait_for_function(f"() => document.querySelector('{layer}').getAttribute('href')")
    drawn = png(page.locator(layer).get_attribute("href").split(",", 1)[1])
    classes = png(result["segmentation_mask"])
    assert drawn.shape[:2] == classes.shape and (classes == 0).any() and (classes != 0).any()
    assert (drawn[..., 3][classes == 0] == 0).all() and (drawn[..., 3][classes != 0] == 128).all()  # background clear
    assert_clean(page, log)


def test_a_semantic_model_is_refused_on_another_tasks_route(http: httpx.Client) -> None:
    response = http.post("/infer/object_detection", json={"model_id": "lraspp/1", "image": image_body("detect_0.jpg")})
    assert response.status_code == 400 and "semantic-segmentation model" in response.json()["message"]


def test_a_plain_segmenter_needs_its_task_and_normalisation(tmp_path: Path) -> None:
    code, output = add(tmp_path, LRASPP, "x/1", "--classes", ",".join(SHAPES))
    assert code == 1 and "--task semantic-segmentation" in output and "--normalize imagenet" in output
    code, output = add(tmp_path, LRASPP, "x/1", "--classes", ",".join(SHAPES), "--task", "semantic-segmentation")
    assert code == 1 and "--normalize imagenet" in output
    code, output = add(tmp_path, LRASPP, "x/1", "--classes", "a,b", *TORCHVISION_FLAGS)
    assert code == 1 and "[B, 2, h, w] class logits" in output
    code, output = add(tmp_path, LRASPP, "x/1", "--classes", ",".join(SHAPES), *TORCHVISION_FLAGS,
                       "--resize", "center-crop")
    assert code == 1 and "centre crop cannot be used" in output
    code, output = add(tmp_path, LRASPP, "x/1", "--classes", ",".join(SHAPES), "--task", "semantic",
                       "--normalize", "imagenet")
    assert code == 0, output
    stored = json.loads(next(tmp_path.rglob("manifest.json")).read_text())
    assert stored["resize"] == "short-side" and stored["input_size"] == [520, 520]  # torchvision's preset
    assert stored["normalization"] == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture
def weights_api() -> Iterator[FakeWeightsApi]:
    model = CatalogModel(weights=LRASPP.read_bytes(), environment=environment(SHAPES, "Stretch to", size=320),
                         classes=SHAPES, task="semantic-segmentation", model_type="deeplabv3plus")
    api = FakeWeightsApi({"deeplab/1": model})
    yield api
    api.close()


def test_a_deeplabv3plus_model_from_the_weights_api(start_server, weights_api: FakeWeightsApi) -> None:
    # Mask budget: the 320x320 answers (3 classes x 320 x 320 logits) fit, a 480x320 image does not.
    server = start_server({"VISIONSERVE_WEIGHTS_API": weights_api.url, "VISIONSERVE_MAX_MASK_PIXELS": "307200"})
    with server.client() as http:
        for image, expected in EXPECTED[LRASPP.name]["images_full_size"].items():
            # Stretched to 320x320 these images are not resampled: torchvision's preset at 320 is the reference.
            answer = segment(http, "deeplab/1", image, confidence=0.0)
            assert_same_map(answer, expected)
        registry = http.get("/model/registry").json()["models"]
        assert [(m["model_id"], m["task_type"]) for m in registry] == [("deeplab/1", "semantic-segmentation")]
        wide = http.post("/infer/semantic_segmentation",
                         json={"model_id": "deeplab/1", "image": image_body("detect_4.jpg")})
        assert wide.status_code == 400 and "VISIONSERVE_MAX_MASK_PIXELS" in wide.json()["message"]


@pytest.mark.parametrize("jump", [0.0, 200.0], ids=["smooth", "logits-jumping-by-200"])
def test_the_folded_softmax_equals_a_float64_softmax(jump: float) -> None:
    """The softmax folded class by class (a running maximum rescaling the sum) equals a softmax over all classes in
    float64, also where logits jump by hundreds between neighbouring pixels (an exp relative to a fixed shift would
    underflow or overflow there)."""
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((5, 37, 53)).astype(np.float32) * 3
    logits[1, :, ::2] += jump  # class 1 towers over the rest in every other column, class 2 in the others
    logits[2, :, 1::2] += jump
    planes = np.stack([cv2.resize(plane.astype(np.float64), (80, 61)) for plane in logits])
    probabilities = np.exp(planes - planes.max(axis=0))
    probabilities /= probabilities.sum(axis=0)
    classes, confidence = classes_and_confidence(logits, 61, 80)
    ties = np.sort(planes, axis=0)[-2] > planes.max(axis=0) - 1e-4  # float32 may order near-equal classes either way
    assert (classes == planes.argmax(axis=0))[~ties].all()
    assert np.abs(confidence - probabilities.max(axis=0)).max() < 1e-5
