"""The built-in models: `shapes/1`, the neutral detector the project trains itself (tools/make_fixtures.py), shipped
in the package; `nudenet/1`, the pretrained one from the `nudenet` wheel; and what the catalog says about each."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES, Server, b64
from tests.test_api_detection import without_ids
from visionserve.models.builtin import NEUTRAL_MODEL_ID, BuiltinModels
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore

ROOT = Path(__file__).parent.parent
SHIPPED_SHAPES = ROOT / "visionserve" / "assets" / "shapes-detect.onnx"


def _detect(client: httpx.Client, model_id: str, image: Path) -> list[dict]:
    body = {"model_id": model_id, "image": {"type": "base64", "value": b64(image.read_bytes())}}
    response = client.post("/infer/object_detection", json=body)
    assert response.status_code == 200, response.text
    return without_ids(response.json())


@pytest.mark.parametrize("image", ["detect_0.jpg", "detect_4.jpg", "detect_5.jpg"])
def test_shapes_answers_with_the_boxes_of_the_fixture_model_in_the_store(fixture_server: Server, image: str) -> None:
    with fixture_server.client() as client:
        built_in = _detect(client, "shapes/1", FIXTURES / "images" / image)
        stored = _detect(client, "shapes-detect/1", FIXTURES / "images" / image)
    assert built_in == stored and built_in
    assert {p["class"] for p in built_in} <= {"circle", "square", "triangle"}


def test_the_shipped_shapes_model_is_the_fixture_small_and_packaged() -> None:
    recorded = json.loads((FIXTURES / "models.json").read_text())["shapes-detect.onnx"]
    data = SHIPPED_SHAPES.read_bytes()
    assert hashlib.sha256(data).hexdigest() == recorded["sha256"]  # regenerated fixtures: copy the file again
    assert len(data) < 2_000_000
    # The wheel takes every file of the package that git does not ignore (hatchling's rule).
    ignored = subprocess.run(["git", "check-ignore", "-q", str(SHIPPED_SHAPES)], cwd=ROOT, check=False)
    assert ignored.returncode == 1
    package = BuiltinModels().find(NEUTRAL_MODEL_ID)
    assert package is not None and package.builtin and package.weights_path == SHIPPED_SHAPES.resolve()
    assert package.manifest.class_names == ["circle", "square", "triangle"]


def test_the_catalog_names_the_neutral_default_and_both_built_in_models(client: httpx.Client) -> None:
    catalog = client.get("/model/catalog").json()
    assert catalog["default_model_id"] == "shapes/1"
    models = {model["model_id"]: model for model in catalog["models"]}
    assert models["shapes/1"]["source"] == models["nudenet/1"]["source"] == "built in"
    assert models["shapes/1"]["class_names"] == ["circle", "square", "triangle"]


def test_the_catalog_says_which_models_are_held_in_memory_only(start_server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = ModelStore(home / "models")
    import_model(store, FIXTURES / "models" / "shapes-detect.onnx", "gone/1", ManifestOverrides())
    import_model(store, FIXTURES / "models" / "shapes-detect.onnx", "kept/1", ManifestOverrides())
    server = start_server(home=home)
    with server.client() as client:
        assert client.post("/model/add", json={"model_id": "gone/1"}).status_code == 200
        store.remove("gone/1")  # as `visionserve models remove` does, while this server still holds it
        models = {model["model_id"]: model for model in client.get("/model/catalog").json()["models"]}
    assert models["gone/1"]["source"] == "memory" and models["gone/1"]["loaded"]
    assert models["kept/1"]["source"] == "store" and not models["kept/1"]["loaded"]
