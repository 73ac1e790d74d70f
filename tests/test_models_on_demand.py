"""Models fetched from a Roboflow-compatible weights API on first use, cached, managed over HTTP."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import FIXTURES, b64, encode, image_value, photo
from tests.fake_weights_api import FORBIDDEN_KEY, GOOD_KEY, CatalogModel, FakeWeightsApi, environment
from tests.onnx_edit import constant_outputs
from tests.test_api_detection import without_ids
from visionserve.cli import app
from visionserve.models.builtin import BuiltinModels
from visionserve.server_process import free_port


@pytest.fixture(scope="module")
def detector() -> tuple[bytes, list[str]]:
    package = BuiltinModels().find("nudenet/1")
    return package.weights_path.read_bytes(), package.manifest.class_names


SHAPES = ["circle", "square", "triangle"]  # the classes of the fixture detectors
POINT_NAMES = ["apex", "left", "right"]  # the pose fixture's triangle corners


@pytest.fixture(scope="module")
def hostile_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Weights a hostile API might serve: a dynamic-input detector (the package's environment.json decides its
    input size), and stand-ins declaring a huge fixed input or a huge class list."""
    folder = tmp_path_factory.mktemp("hostile-weights")
    huge_input = constant_outputs(folder / "huge.onnx", "images", [1, 3, 8192, 8192], {"output0": [1, 7, 10]})
    many_classes = constant_outputs(folder / "many.onnx", "images", [1, 3, 320, 320], {"output0": [1, 100_005, 1]})
    return {
        "dynamic": (FIXTURES / "models/shapes-detect-dynamic.onnx").read_bytes(),
        "huge input": huge_input.read_bytes(),
        "many classes": many_classes.read_bytes(),
    }


def sized_environment(classes: list[str], height: int, width: int) -> dict:
    resize = {"enabled": True, "width": width, "height": height, "format": "Stretch to"}
    return {**environment(classes), "PREPROCESSING": {"resize": resize}}


@pytest.fixture
def api(detector: tuple[bytes, list[str]], hostile_weights: dict[str, bytes]):
    weights, classes = detector

    def model(**overrides) -> CatalogModel:
        return CatalogModel(**{"weights": weights, "environment": environment(classes), "classes": classes, **overrides})

    def shapes(weights: bytes, classes: list[str] = SHAPES, **overrides) -> CatalogModel:
        return CatalogModel(**{"weights": weights, "environment": environment(classes), "classes": classes, **overrides})

    def pose(**overrides) -> CatalogModel:
        weights = (FIXTURES / "models/shapes-pose.onnx").read_bytes()
        return shapes(weights, ["triangle"], task="keypoint-detection", model_type="yolov8n-pose",
                      environment=environment(["triangle"], size=160), **overrides)

    many = [f"class{index}" for index in range(100_001)]

    fake = FakeWeightsApi(
        {
            "coco-demo/3": model(),
            "coco/3": model(),  # what the public alias yolov8n-640 names
            "second/1": model(),
            "third/1": model(),
            "private/1": model(needs_key=True),
            "private/2": model(needs_key=True),
            "slow/1": model(slow_s=1.0),
            "flaky/1": model(describe_failures=1, cut_downloads=2),
            "dropped/1": model(cut_downloads=100),
            "unhurried/1": model(describe_delay_s=3.0),
            "broken/1": CatalogModel(weights=b"not an onnx file" * 100, environment=environment(classes), classes=classes),
            "badsum/1": model(wrong_md5=True),
            "mystery/1": model(model_type="mystery-net-9"),
            "stretch/1": CatalogModel(weights=weights, environment=environment(classes, "Stretch to"), classes=None),
            "crop/1": model(environment=environment(
                classes, **{"static-crop": {"enabled": True, "x_min": 20, "y_min": 0, "x_max": 80, "y_max": 60}})),
            "weights-down/1": model(weights_base=f"http://127.0.0.1:{free_port()}"),
            "drip/1": model(stall_s=60.0),
            "unparsable-env/1": model(raw_environment=b"{not json"),
            "no-env/1": model(missing=("environment.json",)),
            "no-weights/1": model(missing=("weights.onnx",)),
            "bad-preprocessing/1": model(environment={**environment(classes), "PREPROCESSING": "{oops"}),
            "bad-colors/1": model(environment={**environment(classes), "COLORS": {classes[0]: 5}}),
            "wide/1": shapes(hostile_weights["dynamic"], environment=sized_environment(SHAPES, 32, 600_000)),
            "huge/1": shapes(hostile_weights["dynamic"], environment=sized_environment(SHAPES, 60_000, 60_000)),
            "huge-onnx/1": shapes(hostile_weights["huge input"], environment={**environment(SHAPES), "PREPROCESSING": {}}),
            "many-classes/1": shapes(hostile_weights["many classes"], many, environment=environment(many)),
            "pose/1": pose(keypoints_metadata=[{"object_class_id": 0, "keypoints": dict(enumerate(POINT_NAMES)),
                                                "edges": [{"from": 0, "to": 1}]}]),
            "pose-unnamed/1": pose(),
            "pose-bad-names/1": pose(keypoints_metadata=[{"object_class_id": 0, "keypoints": {"1": "apex"}}]),
        }
    )
    yield fake
    fake.close()


@pytest.fixture
def remote_server(start_server, api: FakeWeightsApi):
    def start(**env: str):
        return start_server({"VISIONSERVE_WEIGHTS_API": api.url, **env})

    return start


def infer(client: httpx.Client, model_id: str, api_key: str | None = None, **extra) -> httpx.Response:
    body = {"model_id": model_id, "image": image_value(photo("astronaut")), "api_key": api_key, **extra}
    return client.post("/infer/object_detection", json=body)


def test_first_request_downloads_then_serves_from_memory(remote_server, api: FakeWeightsApi, client: httpx.Client) -> None:
    server = remote_server()
    with server.client() as http:
        first = infer(http, "coco-demo/3")
        assert first.status_code == 200, first.text
        assert without_ids(first.json()) == without_ids(infer(client, "nudenet/1").json())
        for _ in range(3):
            assert infer(http, "coco-demo/3").status_code == 200
    assert api.count("describe coco-demo/3") == 1 and api.count("download coco-demo/3") == 1
    folder = server.home / "models/coco-demo/3"
    assert {p.name for p in folder.iterdir()} == {"weights.onnx", "manifest.json", "environment.json", "class_names.txt"}


def test_cached_models_load_offline_across_restarts(remote_server, api: FakeWeightsApi, start_server) -> None:
    server = remote_server()
    with server.client() as http:
        assert infer(http, "coco-demo/3").status_code == 200
    server.stop()
    dead_api = f"http://127.0.0.1:{free_port()}"
    offline = start_server({"VISIONSERVE_WEIGHTS_API": dead_api}, home=server.home)
    with offline.client() as http:
        response = infer(http, "coco-demo/3")
        assert response.status_code == 200 and response.json()["predictions"]
    assert api.count("describe coco-demo/3") == 1  # the restart made no API call


def test_concurrent_first_requests_download_once(remote_server, api: FakeWeightsApi) -> None:
    server = remote_server()
    with server.client() as http, ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: infer(http, "slow/1").status_code, range(20)))
    assert statuses == [200] * 20
    assert api.count("describe slow/1") == 1 and api.count("download slow/1") == 1


def test_transient_failures_are_retried_and_downloads_resume(remote_server, api: FakeWeightsApi) -> None:
    server = remote_server()
    with server.client() as http:
        response = infer(http, "flaky/1")
    assert response.status_code == 200, response.text
    assert api.count("describe flaky/1") == 2 and api.count("download flaky/1") == 3


def staging_files(home: Path) -> list[Path]:
    """Every file under the store's staging: partial downloads, copies, lock files."""
    staging = home / "models/.staging"
    return sorted(path for path in staging.rglob("*") if path.is_file()) if staging.exists() else []


def test_a_download_killed_half_way_is_known_then_cleaned_at_the_next_load(
    remote_server, api: FakeWeightsApi, start_server
) -> None:
    server = remote_server()

    def request_that_dies_with_the_server() -> None:
        with server.client() as http, contextlib.suppress(httpx.TransportError):
            infer(http, "drip/1")

    threading.Thread(target=request_that_dies_with_the_server, daemon=True).start()
    deadline = time.monotonic() + 60
    while not any(path.suffix == ".partial" and path.stat().st_size for path in staging_files(server.home)):
        assert time.monotonic() < deadline, "the download never began"
        time.sleep(0.1)
    server.process.kill()  # SIGKILL mid-download, with the model's lock held
    server.process.wait()
    assert {path.suffix for path in staging_files(server.home)} == {".partial", ".lock"}

    offline = start_server({"VISIONSERVE_WEIGHTS_API": f"http://127.0.0.1:{free_port()}"}, home=server.home)
    with offline.client() as client:
        response = infer(client, "drip/1")  # the API had it: an outage, not a typo
    assert response.status_code == 503 and response.headers["retry-after"], response.text
    assert "began earlier" in response.json()["message"]
    offline.stop()

    api.catalog["drip/1"].stall_s = 0.0
    again = start_server({"VISIONSERVE_WEIGHTS_API": api.url}, home=server.home)
    with again.client() as client:
        assert infer(client, "drip/1").status_code == 200
    assert staging_files(server.home) == []


@pytest.mark.parametrize(
    ("model_id", "key", "status", "text"),
    [
        ("nowhere/1", None, 404, "nowhere/1"),
        ("private/1", None, 401, "API key"),
        ("private/1", "wrong-key", 401, "API key"),
        ("private/1", FORBIDDEN_KEY, 403, "lacks access"),
        ("broken/1", None, 502, "broken package for broken/1: cannot open weights.onnx as an ONNX model"),
        ("badsum/1", None, 502, "MD5"),
        ("mystery/1", None, 501, "mystery-net-9"),
        ("dropped/1", None, 503, "weights API"),  # the link drops on every attempt
        ("weights-down/1", None, 503, "Could not reach"),  # described, so known to exist: an outage
        ("unhurried/1", None, 504, "Timeout"),
        ("unparsable-env/1", None, 502, "environment.json that is not JSON"),
        ("no-env/1", None, 502, "environment.json is missing"),
        ("no-weights/1", None, 502, "weights.onnx is missing"),
        ("bad-preprocessing/1", None, 502, "PREPROCESSING is not valid JSON"),
        ("bad-colors/1", None, 502, "environment.json: colors"),
        ("wide/1", None, 502, "input size 32x600000"),
        ("huge/1", None, 502, "input size 60000x60000"),
        ("huge-onnx/1", None, 502, "input size 8192x8192"),
        ("many-classes/1", None, 502, "100001 classes"),
    ],
)
def test_failures_map_to_clear_errors_and_leave_no_cache(
    remote_server, model_id: str, key: str | None, status: int, text: str
) -> None:
    # A short deadline for the case that must miss it (a 3 s describe); the others, 100001 classes among them,
    # may take over a second on a loaded machine.
    server = remote_server(VISIONSERVE_WEIGHTS_API_TIMEOUT_S="1" if model_id == "unhurried/1" else "30")
    with server.client() as http:
        response = infer(http, model_id, key)
    assert response.status_code == status, response.text
    assert text in response.json()["message"]
    assert status != 503 or response.headers["retry-after"]
    assert not (server.home / "models" / model_id).exists()
    staging = server.home / "models/.staging"
    assert not [p for p in staging.iterdir() if p.name != "locks"] if staging.exists() else True


def test_unreachable_api_is_404_for_a_model_not_known_to_exist(start_server) -> None:
    """Nothing says the API has the model (tests/test_model_not_found.py: every route and client)."""
    server = start_server({"VISIONSERVE_WEIGHTS_API": f"http://127.0.0.1:{free_port()}"})
    with server.client() as http:
        response = infer(http, "somewhere/1")
    assert response.status_code == 404 and "Retry-After" not in response.headers
    assert "could not be reached" in response.json()["message"]


def test_api_key_sources_and_precedence(remote_server, api: FakeWeightsApi) -> None:
    server = remote_server()
    image = image_value(photo("astronaut"))
    with server.client() as http:
        headers = {"Authorization": f"Bearer {GOOD_KEY}"}
        body = {"model_id": "private/1", "image": image, "api_key": "wrong-key"}
        assert http.post("/infer/object_detection", json=body, headers=headers).status_code == 200
        legacy = http.post("/private/2", params={"api_key": GOOD_KEY}, content=b"x",
                           headers={"Authorization": "Bearer wrong-key", "Content-Type": "text/plain"})
        assert legacy.status_code == 400  # the key was accepted; the body is not an image
    assert api.keys_seen == [GOOD_KEY, GOOD_KEY]


def test_server_default_key_and_keys_never_logged(remote_server, api: FakeWeightsApi) -> None:
    server = remote_server(VISIONSERVE_WEIGHTS_API_KEY=GOOD_KEY, VISIONSERVE_LOG_LEVEL="info")
    with server.client() as http:
        assert infer(http, "private/1").status_code == 200
        http.post("/nudenet/1", params={"api_key": "super-secret-key-123"}, content=b"x",
                  headers={"Authorization": "Bearer another-secret-456", "Content-Type": "text/plain"})
    deadline = time.monotonic() + 10  # the access line is written once the answer has gone out
    while "path=/nudenet/1 status=400" not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "path=/nudenet/1 status=400" in log  # the request is logged, its query string (and key) is not
    assert GOOD_KEY not in log and "super-secret-key-123" not in log and "another-secret-456" not in log


def test_model_management_routes(remote_server, api: FakeWeightsApi) -> None:
    server = remote_server()
    with server.client() as http:
        assert http.get("/model/registry", params={"api_key": "None"}).json()["models"] == []
        added = http.post("/model/add", json={"model_id": "yolov8n-640", "api_key": None})
        assert added.status_code == 200, added.text
        registry = added.json()
        assert registry["models"][0].pop("execution_provider").endswith("ExecutionProvider")  # added fields
        assert registry["models"][0].pop("lone_request_provider") in {None, "CPUExecutionProvider"}
        assert registry["models"] == [
            {"model_id": "coco/3", "task_type": "object-detection", "batch_size": None, "input_height": 320,
             "input_width": 320, "vram_bytes": None, "request_aliases": [], "request_paths": []}
        ]
        assert registry["gpu_memory_used"] is None and "total_vram_bytes" in registry
        assert infer(http, "yolov8n-640").status_code == 200  # the alias, resolved on /infer too
        http.post("/model/add", json={"model_id": "nudenet/1"})
        ids = [m["model_id"] for m in http.get("/model/registry").json()["models"]]
        assert ids == ["coco/3", "nudenet/1"]
        assert http.post("/model/remove", json={"model_id": "coco/3"}).json()["models"][0]["model_id"] == "nudenet/1"
        assert http.post("/model/remove", json={"model_id": "never-loaded/1"}).status_code == 200
        assert http.post("/model/clear").json()["models"] == []
        missing = http.post("/model/add", json={"model_id": "nowhere/7"})
        assert missing.status_code == 404 and "nowhere/7" in missing.json()["message"]
        assert http.post("/model/add", json={"model_id": "../etc"}).status_code == 400
    assert api.count("describe coco/3") == 1


def test_least_recently_used_models_are_evicted(remote_server) -> None:
    server = remote_server(VISIONSERVE_MAX_ACTIVE_MODELS="2")
    with server.client() as http:
        for model_id in ("coco-demo/3", "second/1", "coco-demo/3", "third/1"):
            assert http.post("/model/add", json={"model_id": model_id}).status_code == 200
        ids = {m["model_id"] for m in http.get("/model/registry").json()["models"]}
    assert ids == {"coco-demo/3", "third/1"}


def test_eviction_never_breaks_a_request_in_flight(remote_server) -> None:
    server = remote_server(VISIONSERVE_MAX_ACTIVE_MODELS="2")
    models = ["coco-demo/3", "second/1", "third/1"]
    with server.client() as http:
        for model_id in models:  # download all three first
            assert infer(http, model_id).status_code == 200
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda i: infer(http, models[i % 3]).status_code, range(30)))
    assert statuses == [200] * 30


def test_pinned_models_load_before_ready_and_are_never_evicted(remote_server, api: FakeWeightsApi) -> None:
    server = remote_server(VISIONSERVE_PRELOAD_MODELS="slow/1", VISIONSERVE_MAX_ACTIVE_MODELS="1")
    with server.client() as http:
        assert http.get("/readiness").json() == {"status": "ready"}  # start() waited for it
        assert api.count("download slow/1") == 1
        assert [m["model_id"] for m in http.get("/model/registry").json()["models"]] == ["slow/1"]
        assert infer(http, "second/1").status_code == 200
        ids = {m["model_id"] for m in http.get("/model/registry").json()["models"]}
        assert "slow/1" in ids
        assert infer(http, "slow/1").status_code == 200
    assert api.count("download slow/1") == 1


def test_readiness_is_503_while_start_up_models_load(start_server, api: FakeWeightsApi, tmp_path: Path) -> None:
    api.catalog["slow/1"].slow_s = 3.0
    from tests.conftest import Server

    server = Server(tmp_path / "home", {"VISIONSERVE_WEIGHTS_API": api.url, "VISIONSERVE_PRELOAD_MODELS": "slow/1"})
    statuses: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                statuses.append(httpx.get(f"{server.url}/readiness", timeout=1).status_code)
                if statuses[-1] == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        server.start()
        watcher.join()
    finally:
        server.stop()
    assert 503 in statuses and statuses[-1] == 200


def test_roboflow_preprocessing_is_applied(remote_server) -> None:
    server = remote_server()
    jpeg = encode(photo("astronaut"))
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    with server.client() as http:
        cropped = infer(http, "crop/1", confidence=0.3, image={"type": "base64", "value": b64(jpeg)}).json()
        local = infer(http, "nudenet/1", confidence=0.3, image=image_value(decoded[0:307, 102:409], ".png"))
        stretched = infer(http, "stretch/1").json()
    assert cropped["image"] == {"width": 512, "height": 512}
    shifted = [{**p, "x": p["x"] + 102} for p in without_ids(local.json())]
    assert without_ids(cropped) == shifted and shifted
    assert stretched["predictions"]  # CLASS_MAP names (the API sent no class list), stretch resize


def test_cli_pull_and_package_import(api: FakeWeightsApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VISIONSERVE_WEIGHTS_API", api.url)
    runner = CliRunner()
    result = runner.invoke(app, ["models", "pull", "private/1", "--api-key", GOOD_KEY])
    assert result.exit_code == 0, result.output
    assert "private/1" in result.output and (tmp_path / "home/models/private/1/weights.onnx").exists()
    refused = runner.invoke(app, ["models", "pull", "private/1", "--api-key", "wrong"])
    assert refused.exit_code == 0 and "already in the store" in refused.output
    denied = runner.invoke(app, ["models", "pull", "third/9"])
    assert denied.exit_code == 1 and "not found" in denied.output
    package = tmp_path / "home/models/private/1"
    imported = runner.invoke(app, ["models", "add", str(package), "--id", "copy/1"])
    assert imported.exit_code == 0, imported.output
    assert (tmp_path / "home/models/copy/1/environment.json").exists()


def test_keypoint_names_come_with_the_weights_api_description(
    remote_server, api: FakeWeightsApi, tmp_path: Path
) -> None:
    """A keypoint model's `keypoints_metadata` names its points, as the reference's do, and is kept in the store
    beside it (a restart, or `models add` of the folder, names them again offline)."""
    server = remote_server()
    body = {"image": image_value(cv2.imread(str(FIXTURES / "images/pose_0.jpg"))), "confidence": 0.3}
    with server.client() as http:
        named = http.post("/infer/keypoints_detection", json={**body, "model_id": "pose/1"})
        unnamed = http.post("/infer/keypoints_detection", json={**body, "model_id": "pose-unnamed/1"})
        bad = http.post("/infer/keypoints_detection", json={**body, "model_id": "pose-bad-names/1"})
    assert named.status_code == unnamed.status_code == 200, (named.text, unnamed.text)
    objects, plain = named.json()["predictions"], unnamed.json()["predictions"]
    assert objects and len(objects) == len(plain)
    for mine, theirs in zip(objects, plain):
        assert [point["class"] for point in mine["keypoints"]] == POINT_NAMES
        assert [point["class"] for point in theirs["keypoints"]] == ["0", "1", "2"]
        assert [{**point, "class": None} for point in mine["keypoints"]] == [
            {**point, "class": None} for point in theirs["keypoints"]]
    assert bad.status_code == 502 and "keypoints_metadata" in bad.json()["message"], bad.text
    assert "keyed 0..0" in bad.json()["message"] and api.count("download pose-bad-names/1") == 0  # refused first
    stored = server.home / "models/pose/1"
    assert json.loads((stored / "keypoints_metadata.json").read_text())[0]["keypoints"]["0"] == "apex"
    copied = CliRunner().invoke(app, ["models", "add", str(stored), "--id", "pose-copy/1"],
                                env={"VISIONSERVE_HOME": str(tmp_path / "copy")})
    assert copied.exit_code == 0, copied.output
    manifest = json.loads((tmp_path / "copy/models/pose-copy/1/manifest.json").read_text())
    assert manifest["keypoint_names"] == {"0": POINT_NAMES}
