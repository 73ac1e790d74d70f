"""RF-DETR keypoint models (rfdetr's RFDETRKeypointPreview, a genuine export with random weights built by
tools/make_rfdetr_fixtures.py) through the real server, point by point against rfdetr's own `predict()`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SCORE_TOLERANCE, Server
from tests.fake_weights_api import CatalogModel, FakeWeightsApi, environment
from tests.test_rfdetr import COCO_NAMES, EXPECTED, corners, infer, weights
from visionserve.cli import app

FIXTURE = "rfdetr-keypoint-preview"
# COCO's person keypoints, as a Roboflow keypoints_metadata.json names them.
POINTS = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
          "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
          "left_ankle", "right_ankle"]  # fmt: skip


def add(home: Path, *flags: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["models", "add", str(weights(FIXTURE)), *flags],
                                env={"VISIONSERVE_HOME": str(home)})
    return result.exit_code, " ".join(result.output.split())


SCHEMA = [{"object_class_id": 0, "keypoints": dict(enumerate(POINTS)), "edges": [{"from": 5, "to": 6}]}]


@pytest.fixture(scope="module")
def weights_api() -> Iterator[FakeWeightsApi]:
    """A Roboflow-trained RF-DETR keypoint model as a weights API describes it, `keypoints_metadata` included."""
    package = environment(["person"], "Stretch to", size=576)
    model = CatalogModel(weights=weights(FIXTURE).read_bytes(), environment=package, classes=["person"],
                         task="keypoint-detection", model_type="rfdetr-keypoint-preview", keypoints_metadata=SCHEMA)
    api = FakeWeightsApi({"people-pose/2": model})
    yield api
    api.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rfdetr-keypoints-home")


@pytest.fixture(scope="module")
def http(home: Path, weights_api: FakeWeightsApi) -> Iterator[httpx.Client]:
    schema = home / "keypoints_metadata.json"
    schema.write_text(json.dumps(SCHEMA))
    for flags in (["--id", "kp/1", "--keypoints", str(schema)], ["--id", "kp-plain/1"]):
        code, output = add(home, *flags, "--classes", "person")
        assert code == 0, output
    running = Server(home, {"VISIONSERVE_WEIGHTS_API": weights_api.url}).start()
    with running.client() as client:
        yield client
    running.stop()


def rfdetr_rows(image: str) -> list[dict]:
    """rfdetr's own results in its order: the fixture's only class slot with keypoints is 0 (schema [17]); the
    COCO head's other slots have no name once the model is added with `--classes person`."""
    return [row for row in EXPECTED["predictions"][FIXTURE][image] if row["class_id"] == 0]


def assert_same_keypoints(mine: list[dict], theirs: list[dict], names: list[str]) -> None:
    assert len(mine) == len(theirs) > 0
    for prediction, row in zip(mine, theirs):
        assert prediction["class"] == "person" and prediction["class_id"] == 0
        # the uncertainty-fused score
        assert prediction["confidence"] == pytest.approx(row["score"], abs=SCORE_TOLERANCE)
        assert np.abs(np.array(corners(prediction)) - row["xyxy"]).max() <= 0.51
        points = prediction["keypoints"]
        assert [point["class"] for point in points] == names and [p["class_id"] for p in points] == list(range(17))
        for point, (x, y, confidence) in zip(points, row["keypoints"]):
            assert abs(point["x"] - x) <= 0.5 and abs(point["y"] - y) <= 0.5  # whole pixels, as the reference
            assert point["confidence"] == pytest.approx(confidence, abs=SCORE_TOLERANCE)


@pytest.mark.parametrize("image", list(EXPECTED["images"]))
def test_keypoints_equal_rfdetr_predict(http: httpx.Client, image: str) -> None:
    (answer,) = infer(http, "/infer/keypoints_detection", "kp/1", [image], confidence=0.0)
    assert list(answer["predictions"][0]["keypoints"][0]) == ["x", "y", "confidence", "class_id", "class"]
    assert_same_keypoints(answer["predictions"], rfdetr_rows(image), POINTS)


def test_the_threshold_applies_to_the_fused_score_in_rfdetrs_order(http: httpx.Client) -> None:
    """rfdetr ranks by the raw score, then fuses it with the keypoints' uncertainty and thresholds the fused one:
    its answers are not sorted by what they report, and the server keeps that order and that cut."""
    theirs = [row for row in rfdetr_rows("detect_4") if row["score"] > 0.42]
    assert any(a["score"] < b["score"] for a, b in zip(theirs, theirs[1:]))  # the fixture shows the effect
    (answer,) = infer(http, "/infer/keypoints_detection", "kp/1", ["detect_4"], confidence=0.42)
    assert_same_keypoints(answer["predictions"], theirs, POINTS)


def test_without_a_schema_points_are_numbered(http: httpx.Client) -> None:
    (answer,) = infer(http, "/infer/keypoints_detection", "kp-plain/1", ["segment_0"], confidence=0.0)
    assert_same_keypoints(answer["predictions"], rfdetr_rows("segment_0"), [str(index) for index in range(17)])


def test_keypoint_classes_without_names_are_refused(tmp_path: Path) -> None:
    """rfdetr's default COCO names map the 91 logits by COCO id, which leaves slot 0, the one with keypoints,
    unnamed: served like that, no keypoint would ever be answered."""
    code, output = add(tmp_path, "--id", "kp/1", "--classes", ",".join(COCO_NAMES))
    assert code == 1 and "keypoint class slots [0] have no class name" in output and "--classes" in output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"object_class_id": 0, "keypoints": {"1": "nose"}}]))
    code, output = add(tmp_path, "--id", "kp/2", "--classes", "person", "--keypoints", str(bad))
    assert code == 1 and "keyed 0..0" in output


def test_a_roboflow_package_names_its_keypoints(tmp_path: Path) -> None:
    """A package folder as Roboflow's cache holds a keypoint model: its keypoints_metadata.json names the points."""
    package = tmp_path / "package"
    package.mkdir()
    (package / "weights.onnx").symlink_to(weights(FIXTURE))
    (package / "environment.json").write_text(json.dumps(environment(["person"], "Stretch to", size=576)))
    schema = [{"object_class_id": 0, "keypoints": dict(enumerate(POINTS)), "edges": []}]
    (package / "keypoints_metadata.json").write_text(json.dumps(schema))
    (package / "model_type.json").write_text(json.dumps({"project_task_type": "keypoint-detection"}))
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["models", "add", str(package), "--id", "pkg/1"],
                                env={"VISIONSERVE_HOME": str(home)})
    assert result.exit_code == 0, result.output
    manifest = json.loads((home / "models/pkg/1/manifest.json").read_text())
    assert manifest["family"] == "rfdetr" and manifest["task"] == "keypoint-detection"
    assert manifest["keypoint_names"] == {"0": POINTS} and manifest["keypoint_counts"] == [17]
    assert (home / "models/pkg/1/keypoints_metadata.json").is_file()


def test_the_weights_api_serves_a_named_keypoint_model(http: httpx.Client, home: Path) -> None:
    """Fetched on first use: its `keypoints_metadata` names the points and sets the class slots, and the answers
    are rfdetr's own, point by point."""
    (answer,) = infer(http, "/infer/keypoints_detection", "people-pose/2", ["detect_4"], confidence=0.0)
    assert_same_keypoints(answer["predictions"], rfdetr_rows("detect_4"), POINTS)
    manifest = json.loads((home / "models/people-pose/2/manifest.json").read_text())
    assert manifest["family"] == "rfdetr" and manifest["keypoint_counts"] == [17]
