"""The official `inference-sdk` client and `supervision`, installed from PyPI into their own venv (their pins
clash with ours), work against our server unchanged."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES, Server, b64, encode, ground_truth, photo
from tests.test_api_detection import without_ids

ROOT = Path(__file__).parent.parent
SDK_PYTHON = Path(os.environ.get("VISIONSERVE_SDK_PYTHON", ROOT / ".venv-sdk/bin/python"))
SCRIPT = Path(__file__).parent / "official_sdk/run_client.py"


def official_client(server: Server, model: str, images: list[Path], *flags: str) -> dict:
    assert SDK_PYTHON.exists(), f"{SDK_PYTHON} is missing: `make test` creates it (inference-sdk + supervision)"
    command = [str(SDK_PYTHON), str(SCRIPT), "--url", server.url, "--model", model, *flags, *map(str, images)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("sdk-photos")
    paths = []
    for name, ext in (("astronaut", ".jpg"), ("coffee", ".png"), ("chelsea", ".jpg")):
        path = folder / f"{name}{ext}"
        path.write_bytes(encode(photo(name), ext))
        paths.append(path)
    return paths


def ours(client: httpx.Client, path: Path, confidence: float = 0.4) -> list[dict]:
    body = {"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(path.read_bytes())}, "confidence": confidence}
    return without_ids(client.post("/infer/object_detection", json=body).json())


def test_v0_mode_single_image(server: Server, client: httpx.Client, photos: list[Path]) -> None:
    output = official_client(server, "nudenet/1", photos[:1], "--v0")
    (item,) = output["results"]
    assert without_ids(item["result"]) == ours(client, photos[0])
    assert "FACE_FEMALE" in item["detections"]["class_name"]
    face = item["detections"]["class_name"].index("FACE_FEMALE")
    x1, y1, x2, y2 = item["detections"]["xyxy"][face]
    assert 150 < (x1 + x2) / 2 < 300 and 80 < (y1 + y2) / 2 < 200


def test_v0_mode_batch_with_concurrency_and_arrays(server: Server, client: httpx.Client, photos: list[Path]) -> None:
    output = official_client(
        server, "nudenet/1", photos, "--v0", "--arrays", "--confidence", "0.2",
        "--max-batch-size", "2", "--max-concurrent-requests", "2",
    )
    results = output["results"]
    assert [r["result"]["image"] for r in results] == [
        {"width": 512, "height": 512}, {"width": 600, "height": 400}, {"width": 451, "height": 300}
    ]
    assert all(p["confidence"] >= 0.2 for r in results for p in r["result"]["predictions"])
    assert len(results[0]["detections"]["xyxy"]) == len(results[0]["result"]["predictions"]) >= 1
    assert results[0]["detections"]["mask_pixels"] is None


def test_v0_mode_errors_reach_the_client(server: Server, photos: list[Path]) -> None:
    output = official_client(server, "no-such-model/1", photos[:1], "--v0")
    assert output["error"]["status_code"] == 404 and "no-such-model/1" in output["error"]["message"]


def test_default_mode_registry_add_then_infer(start_server, photos: list[Path]) -> None:
    """A fresh server: the official client finds no model in the registry, adds it, then infers."""
    server = start_server()
    output = official_client(server, "nudenet/1", photos[:1])
    (item,) = output["results"]
    assert "FACE_FEMALE" in item["detections"]["class_name"]
    with server.client() as http:
        assert [m["model_id"] for m in http.get("/model/registry").json()["models"]] == ["nudenet/1"]
        assert without_ids(item["result"]) == ours(http, photos[0])


def test_default_mode_batch_of_three(server: Server, client: httpx.Client, photos: list[Path]) -> None:
    output = official_client(
        server, "nudenet/1", photos, "--confidence", "0.2", "--max-batch-size", "2", "--max-concurrent-requests", "2"
    )
    results = output["results"]
    assert len(results) == 3
    for item, path in zip(results, photos):
        assert without_ids(item["result"]) == ours(client, path, confidence=0.2)
        assert len(item["detections"]["xyxy"]) == len(item["result"]["predictions"])
        for (x1, y1, x2, y2), prediction in zip(item["detections"]["xyxy"], item["result"]["predictions"]):
            assert abs((x1 + x2) / 2 - prediction["x"]) < 1e-6 and abs(y2 - y1 - prediction["height"]) < 1e-6


def test_default_mode_errors(server: Server, photos: list[Path]) -> None:
    output = official_client(server, "no-such-model/2", photos[:1])
    assert output["error"]["status_code"] == 404 and "no-such-model/2" in output["error"]["message"]


@pytest.fixture(scope="module")
def task_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("task-images")
    by_task: dict[str, list[Path]] = {}
    for name, truth in sorted(ground_truth().items()):
        path = folder / name
        path.write_bytes((FIXTURES / "images" / name).read_bytes())
        by_task.setdefault(truth["task"], []).append(path)
    return by_task


def test_segmentation_masks_reach_supervision(fixture_server: Server, task_images: dict) -> None:
    images = task_images["segment"]
    output = official_client(fixture_server, "shapes-segment/1", images, "--confidence", "0.5",
                             "--max-batch-size", "2", "--max-concurrent-requests", "2")
    assert len(output["results"]) == len(images)
    for item in output["results"]:
        pixels = item["detections"]["mask_pixels"]
        assert pixels and all(count > 100 for count in pixels)  # a filled polygon per shape
        assert all(p["mask_format"] == "polygon" for p in item["result"]["predictions"])


def test_keypoints_reach_supervision(fixture_server: Server, task_images: dict) -> None:
    output = official_client(fixture_server, "shapes-pose/1", task_images["pose"], "--confidence", "0.5")
    for item in output["results"]:
        xy = item["keypoints"]["xy"]
        assert len(xy) == len(item["result"]["predictions"]) and all(len(points) == 3 for points in xy)
        first = item["result"]["predictions"][0]["keypoints"][0]
        assert xy[0][0] == pytest.approx([first["x"], first["y"]])


def test_classification_in_both_modes(fixture_server: Server, task_images: dict) -> None:
    images = task_images["classify"]
    for flags in ((), ("--v0",)):
        output = official_client(fixture_server, "shapes-classify/1", images, *flags)
        truth = ground_truth()
        assert [item["result"]["top"] for item in output["results"]] == [truth[p.name]["label"] for p in images]
