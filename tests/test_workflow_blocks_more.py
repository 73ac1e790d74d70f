"""Expression and detections transformation blocks, run through the official `inference-sdk` against a real server
with the fixture models; each output checked against computing the same thing from /infer."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, b64
from tests.test_api_detection import without_ids
from tests.test_workflows import DETECT, by_class_filter, detector, infer, run_sdk, workflow


@pytest.fixture(scope="module")
def http(fixture_server: Server):
    with fixture_server.client() as client:
        yield client


def count_is_at_least(name: str, least: str) -> dict:
    return {"type": "StatementGroup", "statements": [{"type": "BinaryStatement",
            "left_operand": {"type": "DynamicOperand", "operand_name": name}, "comparator": {"type": "(Number) >="},
            "right_operand": {"type": "DynamicOperand", "operand_name": least}}]}  # fmt: skip


def test_expression_chooses_by_cases_over_transformed_data(fixture_server: Server, tmp_path: Path) -> None:
    """Image 0 has 4 shapes, image 1 has 3: the case `count >= least` holds only for image 0; the default's
    dynamic result is the top class of image 1's most confident shape, in upper case."""
    step = {"type": "roboflow_core/expression@v1", "name": "say",
            "data": {"count": "$steps.det.predictions", "best": "$steps.det.predictions", "least": "$inputs.least"},
            "data_operations": {"count": [{"type": "SequenceLength"}],
                                "best": [{"type": "DetectionsSelection", "mode": "top_confidence"},
                                         {"type": "ExtractDetectionProperty", "property_name": "class_name"}]},
            "switch": {"type": "CasesDefinition",
                       "cases": [{"type": "CaseDefinition", "condition": count_is_at_least("count", "least"),
                                  "result": {"type": "StaticCaseResult", "value": "many"}}],
                       "default": {"type": "DynamicCaseResult", "parameter_name": "best",
                                   "operations": [{"type": "SequenceAggregate", "mode": "first"}]}}}  # fmt: skip
    spec = workflow([detector(), step], {"said": "$steps.say.output", "dets": "$steps.det.predictions"}, {"least": 4})
    outputs = run_sdk(fixture_server, spec, DETECT, tmp_path)["outputs"]
    assert outputs[0]["said"] == "many"
    top = max(outputs[1]["dets"]["predictions"], key=lambda p: p["confidence"])
    assert outputs[1]["said"] == top["class"]


def test_expression_is_not_python(http: httpx.Client) -> None:
    """A result is data: Python in a value comes back as the same string, never run."""
    step = {"type": "Expression", "name": "say", "data": {"x": "$inputs.x"},
            "switch": {"cases": [], "default": {"type": "StaticCaseResult", "value": "__import__('os').getcwd()"}}}
    spec = {"version": "1.0", "inputs": [{"type": "WorkflowParameter", "name": "x", "default_value": 1}],
            "steps": [step], "outputs": [{"type": "JsonField", "name": "said", "selector": "$steps.say.output"}]}
    response = http.post("/workflows/run", json={"specification": spec, "inputs": {}})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [{"said": "__import__('os').getcwd()"}]
    step["switch"]["default"] = {"type": "PythonCode", "code": "1"}
    refused = http.post("/workflows/run", json={"specification": spec, "inputs": {}})
    assert refused.status_code == 400 and "Step 'say'" in refused.json()["message"]


def test_detections_transformation_equals_filtering_sorting_and_growing_infer(
    fixture_server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    operations = [*by_class_filter(["triangle", "circle", "square"], 0.0),
                  {"type": "SortDetections", "mode": "x_min", "ascending": False},
                  {"type": "DetectionsOffset", "offset_x": 10, "offset_y": 20}]  # fmt: skip
    step = {"type": "roboflow_core/detections_transformation@v1", "name": "change",
            "predictions": "$steps.det.predictions", "operations": operations,
            "operations_parameters": {"minimum": "$inputs.minimum"}}  # fmt: skip
    spec = workflow([detector(), step], {"changed": "$steps.change.predictions"}, {"minimum": 0.5})
    result = run_sdk(fixture_server, spec, DETECT, tmp_path, "--detections", "changed")
    for output, read, path in zip(result["outputs"], result["supervision"], DETECT):
        direct = infer(http, "object_detection", "shapes-detect/1", path.read_bytes())
        width, height = direct["image"]["width"], direct["image"]["height"]
        kept = [p for p in without_ids(direct) if p["class"] in ("triangle", "circle", "square")
                and p["confidence"] >= 0.5]  # fmt: skip
        kept.sort(key=lambda p: p["x"] - p["width"] / 2, reverse=True)
        expected = []
        for p in kept:
            x1, y1 = max(p["x"] - p["width"] / 2 - 5, 0), max(p["y"] - p["height"] / 2 - 10, 0)
            x2, y2 = min(p["x"] + p["width"] / 2 + 5, width), min(p["y"] + p["height"] / 2 + 10, height)
            expected.append([x1, y1, x2, y2])
        assert read["changed"]["xyxy"] == expected and expected  # whole and half pixels: exact
        assert [p["class"] for p in output["changed"]["predictions"]] == [p["class"] for p in kept]


def test_detections_transformation_must_end_with_detections(http: httpx.Client) -> None:
    step = {"type": "DetectionsTransformation", "name": "change", "predictions": "$steps.det.predictions",
            "operations": [{"type": "SequenceLength"}]}
    spec = workflow([detector(), step], {"changed": "$steps.change.predictions"})
    image = {"type": "base64", "value": b64(DETECT[0].read_bytes())}
    response = http.post("/workflows/run", json={"specification": spec, "inputs": {"image": image}})
    assert response.status_code == 400, response.text
    assert "Step 'change'" in response.json()["message"] and "end with detections" in response.json()["message"]
