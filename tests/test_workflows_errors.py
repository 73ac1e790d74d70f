"""Workflow routes and their errors: every compile error is a 4xx naming the step and the property, found before
any model runs (the metrics' model loads and forward passes do not move); caps name their settings."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import FIXTURES, Server, b64
from tests.test_workflows import OD_V2, detector, workflow

IMAGE = {"type": "base64", "value": b64((FIXTURES / "images" / "detect_0.jpg").read_bytes())}
CROP = {"type": "roboflow_core/dynamic_crop@v1", "name": "crop", "images": "$inputs.image",
        "predictions": "$steps.det.predictions"}  # fmt: skip
CLASSIFY = {"type": "roboflow_core/roboflow_classification_model@v2", "name": "cls", "images": "$steps.crop.crops",
            "model_id": "shapes-classify/1"}  # fmt: skip
GOOD = workflow([detector(), CROP, CLASSIFY], {"classes": "$steps.cls.predictions"})


@pytest.fixture(scope="module")
def http(fixture_server: Server) -> Iterator[httpx.Client]:
    with fixture_server.client() as client:
        yield client


def run(http: httpx.Client, spec: dict, path: str = "/workflows/run", **fields: object) -> httpx.Response:
    return http.post(path, json={"specification": spec, "inputs": {"image": IMAGE}, "use_cache": True, **fields})


def model_work(http: httpx.Client) -> float:
    """Model loads and forward passes so far, every model together."""
    text = http.get("/metrics").text
    pattern = re.compile(r"^visionserve_(?:model_loads|forward_passes)_total\{[^}]*\} (\S+)$", re.MULTILINE)
    return sum(float(value) for value in pattern.findall(text))


def changed(spec: dict, step: int, **properties: object) -> dict:
    broken = copy.deepcopy(spec)
    broken["steps"][step].update(properties)
    return broken


CYCLE = workflow(
    [{**detector(), "images": "$steps.crop.crops"}, CROP], {"d": "$steps.det.predictions"}
)
BROKEN = {
    "unknown block type": (changed(GOOD, 1, type="roboflow_core/no_such_block@v1"), "crop", "type"),
    "malformed selector": (changed(GOOD, 1, predictions="$steps..predictions"), "crop", "predictions"),
    "unknown step": (changed(GOOD, 1, predictions="$steps.nothing.predictions"), "crop", "predictions"),
    "unknown output": (changed(GOOD, 1, predictions="$steps.det.boxes"), "crop", "predictions"),
    "unknown input": (changed(GOOD, 0, images="$inputs.picture"), "det", "images"),
    "kind mismatch": (changed(GOOD, 2, images="$steps.det.predictions"), "cls", "images"),
    "missing required property": (workflow([{"type": OD_V2, "name": "det", "images": "$inputs.image"}], {}),
                                  "det", "model_id"),
    "wrong property type": (changed(GOOD, 0, confidence=[1, 2]), "det", "confidence"),
    "unknown operation": (workflow([detector(), {"type": "DetectionsFilter", "name": "f", "predictions":
                          "$steps.det.predictions", "operations": [{"type": "Eval", "code": "1"}]}], {}),
                          "f", "operations"),
    "cycle": (CYCLE, "det", None),
    "mixed batch levels": (workflow([detector(), CROP, {**CROP, "name": "again", "images": "$steps.crop.crops"}], {}),
                           "again", None),
}  # fmt: skip


@pytest.mark.parametrize("problem", list(BROKEN))
def test_every_compile_error_names_the_step_and_property_before_any_model_runs(
    http: httpx.Client, problem: str
) -> None:
    spec, step, field = BROKEN[problem]
    before = model_work(http)
    for path in ("/workflows/run", "/infer/workflows"):
        response = run(http, spec, path)
        assert response.status_code == 400, response.text
        body = response.json()
        assert f"Step '{step}'" in body["message"], body
        if field is not None:
            assert f"property '{field}'" in body["message"]
            assert body["blocks_errors"][0] == {**body["blocks_errors"][0], "block_id": step, "property_name": field}
        assert body["error_type"]
    validated = http.post("/workflows/validate", json=spec)
    assert validated.status_code == 400 and f"Step '{step}'" in validated.json()["message"]
    assert model_work(http) == before  # nothing was loaded or run


def test_validate_accepts_a_good_definition(http: httpx.Client) -> None:
    assert http.post("/workflows/validate", json=GOOD).json() == {"status": "ok"}


def test_run_routes_are_not_the_legacy_model_route(http: httpx.Client) -> None:
    """Before, /workflows/run and /infer/workflows reached /{project}/{version} and answered a confusing 400."""
    for path in ("/workflows/run", "/infer/workflows"):
        response = run(http, GOOD, path)
        assert response.status_code == 200, response.text
        assert set(response.json()) >= {"outputs", "profiler_trace"}


def test_a_runtime_failure_names_the_step_and_keeps_its_status(http: httpx.Client) -> None:
    response = run(http, changed(GOOD, 2, model_id="no-such-model/3"))
    assert response.status_code == 404
    assert "Step 'cls'" in response.json()["message"] and "no-such-model/3" in response.json()["message"]
    assert run(http, GOOD).status_code == 200  # the server and its models are intact


def test_missing_input_and_bad_image_are_400s(http: httpx.Client) -> None:
    response = http.post("/workflows/run", json={"specification": GOOD, "inputs": {}})
    assert response.status_code == 400 and "'image'" in response.json()["message"]
    response = http.post("/workflows/run", json={"specification": GOOD, "inputs": {"image": {"type": "base64",
                                                                                           "value": "bm90IGFu"}}})
    assert response.status_code == 400 and "Could not load input image" in response.json()["message"]


def test_excluded_fields_and_profiler_trace(http: httpx.Client) -> None:
    spec = workflow([detector(), CROP, CLASSIFY],
                    {"classes": "$steps.cls.predictions", "dets": "$steps.det.predictions"})
    body = run(http, spec, excluded_fields=["dets"], enable_profiling=True).json()
    assert [set(output) for output in body["outputs"]] == [{"classes"}]
    names = {event["name"] for event in body["profiler_trace"]}
    assert {"workflow_compilation", "det", "crop", "cls"} <= names
    assert all({"name", "ph", "pid", "tid", "ts"} <= set(event) for event in body["profiler_trace"])
    assert run(http, spec).json()["profiler_trace"] is None


def test_saved_workflow_routes_say_cloud_definitions_are_not_fetched(http: httpx.Client) -> None:
    for path in ("/my-workspace/workflows/unknown-flow", "/infer/workflows/my-workspace/unknown-flow"):
        response = http.post(path, json={"inputs": {"image": IMAGE}, "use_cache": True})
        assert response.status_code == 404, response.text
        assert "unknown-flow" in response.json()["message"] and "offline" in response.json()["message"]


def test_a_workflow_saved_on_this_server_runs_by_id(fixture_server: Server, http: httpx.Client) -> None:
    from visionserve.workflows.saved import SavedWorkflows

    SavedWorkflows(fixture_server.home).add("crop-and-classify", GOOD, replace=True)
    inline = run(http, GOOD).json()["outputs"]
    for path in ("/my-workspace/workflows/crop-and-classify", "/infer/workflows/my-workspace/crop-and-classify"):
        response = http.post(path, json={"inputs": {"image": IMAGE}, "use_cache": True})
        assert response.status_code == 200, response.text
        assert [[c["top"] for c in o["classes"]] for o in response.json()["outputs"]] == [
            [c["top"] for c in o["classes"]] for o in inline
        ]


def test_describe_lists_blocks_with_schemas_and_output_kinds(http: httpx.Client) -> None:
    for response in (http.get("/workflows/blocks/describe"), http.post("/workflows/blocks/describe", json={})):
        assert response.status_code == 200
        blocks = {block["manifest_type_identifier"]: block for block in response.json()["blocks"]}
        crop = blocks["roboflow_core/dynamic_crop@v1"]
        assert crop["manifest_type_identifier_aliases"] == ["DynamicCrop", "Crop"]
        assert crop["output_dimensionality_offset"] == 1
        assert [kind["name"] for kind in crop["outputs_manifest"][0]["kind"]] == ["image"]
        assert "predictions" in crop["block_schema"]["properties"]
        detection = blocks["roboflow_core/roboflow_object_detection_model@v1"]
        assert "ObjectDetectionModel" in detection["manifest_type_identifier_aliases"]
        assert detection["block_schema"]["properties"]["confidence"]["default"] == 0.4
    schema = http.get("/workflows/definition/schema").json()["schema"]
    assert {"version", "inputs", "steps", "outputs"} <= set(schema["properties"])


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from visionserve.models.inspect import ManifestOverrides, import_model
    from visionserve.models.store import ModelStore

    home = tmp_path_factory.mktemp("capped-home")
    store = ModelStore(home / "models")
    for model_id, name in (("shapes-detect/1", "shapes-detect.onnx"), ("shapes-classify/1", "shapes-classify.onnx")):
        import_model(store, FIXTURES / "models" / name, model_id, ManifestOverrides())
    running = Server(home, {"VISIONSERVE_WORKFLOW_MAX_STEPS": "3", "VISIONSERVE_WORKFLOW_MAX_CROPS_PER_IMAGE": "3",
                            "VISIONSERVE_WORKFLOW_MAX_MODEL_PASSES": "4"}).start()  # fmt: skip
    yield running
    running.stop()


def test_caps_answer_with_their_settings(capped_server: Server) -> None:
    with capped_server.client() as http:
        four_steps = workflow([detector(), CROP, CLASSIFY, detector("again")], {})
        response = run(http, four_steps)
        assert response.status_code == 422 and "VISIONSERVE_WORKFLOW_MAX_STEPS" in response.json()["message"]
        response = run(http, GOOD)  # detect_0 has 4 shapes: 4 crops
        assert response.status_code == 413, response.text
        assert "VISIONSERVE_WORKFLOW_MAX_CROPS_PER_IMAGE" in response.json()["message"]
        three = workflow([detector("a"), detector("b"), detector("c")], {"a": "$steps.a.predictions"})
        response = http.post("/workflows/run", json={"specification": three, "inputs": {"image": [IMAGE, IMAGE]}})
        assert response.status_code == 413, response.text  # 6 passes: 2 images through 3 models
        assert "VISIONSERVE_WORKFLOW_MAX_MODEL_PASSES" in response.json()["message"]
        two = {**three, "steps": three["steps"][:2]}
        response = http.post("/workflows/run", json={"specification": two, "inputs": {"image": [IMAGE, IMAGE]}})
        assert response.status_code == 200
