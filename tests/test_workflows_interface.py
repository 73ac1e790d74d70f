"""`/workflows/describe_interface` and `/workflows/blocks/dynamic_outputs` against a real server: a definition's
inputs and outputs with their kinds, a step's outputs when its manifest names them, and errors naming the step."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Server
from tests.test_workflows import detector, workflow

CROP = {"type": "roboflow_core/dynamic_crop@v1", "name": "crop", "images": "$inputs.image",
        "predictions": "$steps.det.predictions"}  # fmt: skip


@pytest.fixture(scope="module")
def http(fixture_server: Server):
    with fixture_server.client() as client:
        yield client


def test_interface_names_each_input_and_output_with_its_kinds(http: httpx.Client) -> None:
    spec = workflow([detector(), CROP], {"boxes": "$steps.det.predictions", "crops": "$steps.crop.crops",
                                         "all": "$steps.det.*", "echo": "$inputs.conf"}, {"conf": 0.5})  # fmt: skip
    response = http.post("/workflows/describe_interface", json={"specification": spec, "api_key": "k"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["inputs"] == {"image": ["image"], "conf": ["*"]}
    assert answer["outputs"]["boxes"] == ["object_detection_prediction"]
    assert answer["outputs"]["crops"] == ["image"]
    assert set(answer["outputs"]["all"]) == {"inference_id", "object_detection_prediction", "roboflow_model_id"}
    assert answer["outputs"]["echo"] == ["*"]
    assert answer["typing_hints"]["image"] == "dict" and answer["typing_hints"]["object_detection_prediction"] == "dict"


def test_interface_of_a_broken_definition_names_the_step(http: httpx.Client) -> None:
    spec = workflow([{"type": "roboflow_core/nope@v1", "name": "mystery"}], {})
    response = http.post("/workflows/describe_interface", json={"specification": spec})
    assert response.status_code == 400 and "mystery" in response.json()["message"]


def test_dynamic_outputs_follow_the_manifest(http: httpx.Client) -> None:
    aggregator = {"type": "roboflow_core/data_aggregator@v1", "name": "agg", "data": {"n": "$steps.det.predictions"},
                  "aggregation_mode": {"n": ["count", "distinct"]}}  # fmt: skip
    response = http.post("/workflows/blocks/dynamic_outputs", json=aggregator)
    assert response.status_code == 200, response.text
    assert [output["name"] for output in response.json()] == ["n_count", "n_distinct"]
    model = http.post("/workflows/blocks/dynamic_outputs", json=detector()).json()
    assert {output["name"] for output in model} == {"inference_id", "predictions", "model_id"}
    bad = http.post("/workflows/blocks/dynamic_outputs", json={**aggregator, "aggregation_mode": {"x": ["count"]}})
    assert bad.status_code == 400 and "agg" in bad.json()["message"]


def test_interface_of_a_saved_definition(fixture_server: Server, http: httpx.Client) -> None:
    from visionserve.workflows.saved import SavedWorkflows

    definition = workflow([detector()], {"boxes": "$steps.det.predictions"})
    SavedWorkflows(fixture_server.home).add("interface-demo", definition, replace=True)
    response = http.post("/any-workspace/workflows/interface-demo/describe_interface", json={"use_cache": True})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == {"boxes": ["object_detection_prediction"]}
    missing = http.post("/any-workspace/workflows/not-saved/describe_interface", json={})
    assert missing.status_code == 404
