"""Workflows run through the official `inference-sdk` (`run_workflow`, from .venv-sdk) against a real server with
the fixture models: each block's output checked against computing the same thing directly (/infer, slicing)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import FIXTURES, Server, b64, encode
from tests.test_api_detection import without_ids
from tests.test_official_sdk import SDK_PYTHON

SCRIPT = Path(__file__).parent / "official_sdk/run_workflow.py"
DETECT = [FIXTURES / "images" / f"detect_{index}.jpg" for index in (0, 1)]
OD_V2 = "roboflow_core/roboflow_object_detection_model@v2"


def run_sdk(server: Server, spec: dict, images: list[Path], tmp_path: Path, *flags: str, name: str = "image") -> dict:
    assert SDK_PYTHON.exists(), f"{SDK_PYTHON} is missing: `make test` creates it (inference-sdk + supervision)"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    command = [str(SDK_PYTHON), str(SCRIPT), "--url", server.url, "--spec", str(spec_path), *flags,
               *(f"{name}={path}" for path in images)]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert "outputs" in result, result["error"]
    return result


def workflow(steps: list[dict], outputs: dict[str, str], parameters: dict | None = None, **output_options: str) -> dict:
    inputs = [{"type": "WorkflowImage", "name": "image"}]
    inputs += [{"type": "WorkflowParameter", "name": k, "default_value": v} for k, v in (parameters or {}).items()]
    return {"version": "1.0", "inputs": inputs, "steps": steps,
            "outputs": [{"type": "JsonField", "name": name, "selector": selector, **output_options}
                        for name, selector in outputs.items()]}  # fmt: skip


def detector(name: str = "det", type_id: str = OD_V2, model: str = "shapes-detect/1", **options: object) -> dict:
    return {"type": type_id, "name": name, "images": "$inputs.image", "model_id": model, **options}


def infer(client: httpx.Client, task: str, model: str, data: bytes, **options: object) -> dict:
    body = {"model_id": model, "image": {"type": "base64", "value": b64(data)}, **options}
    response = client.post(f"/infer/{task}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def boxes(predictions: list[dict]) -> list[dict]:
    """Predictions without the ids and lineage keys a workflow adds (the rest must match /infer exactly)."""
    lineage = {"detection_id", "parent_id", "parent_origin", "root_parent_id", "root_parent_origin"}
    return [{key: value for key, value in p.items() if key not in lineage} for p in predictions]


def by_class_filter(names: list[str], minimum: float) -> list[dict]:
    """The operations of a detections filter: class in `names` and confidence >= `minimum`."""
    def extract(prop: str) -> dict:
        return {"type": "DynamicOperand", "operand_name": "_",
                "operations": [{"type": "ExtractDetectionProperty", "property_name": prop}]}  # fmt: skip

    group = {"type": "StatementGroup", "operator": "and", "statements": [
        {"type": "BinaryStatement", "left_operand": extract("class_name"), "comparator": {"type": "in (Sequence)"},
         "right_operand": {"type": "StaticOperand", "value": names}},
        {"type": "BinaryStatement", "left_operand": extract("confidence"), "comparator": {"type": "(Number) >="},
         "right_operand": {"type": "DynamicOperand", "operand_name": "minimum"}},
    ]}  # fmt: skip
    return [{"type": "DetectionsFilter", "filter_operation": group}]


@pytest.fixture(scope="module")
def http(fixture_server: Server):
    with fixture_server.client() as client:
        yield client


def test_model_step_equals_infer_box_for_box_and_supervision_reads_it(
    fixture_server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    spec = workflow([detector(confidence="$inputs.conf")], {"dets": "$steps.det.predictions",
                                                            "model": "$steps.det.model_id"}, {"conf": 0.5})
    result = run_sdk(fixture_server, spec, DETECT, tmp_path, "--detections", "dets")
    assert len(result["outputs"]) == 2  # one dict per image of the batch, in order
    for output, read, path in zip(result["outputs"], result["supervision"], DETECT):
        direct = infer(http, "object_detection", "shapes-detect/1", path.read_bytes(), confidence=0.5)
        assert output["model"] == "shapes-detect/1"
        assert output["dets"]["image"] == direct["image"]
        assert boxes(output["dets"]["predictions"]) == without_ids(direct) and direct["predictions"]
        expected = [[p["x"] - p["width"] / 2, p["y"] - p["height"] / 2, p["x"] + p["width"] / 2,
                     p["y"] + p["height"] / 2] for p in direct["predictions"]]  # fmt: skip
        assert read["dets"]["xyxy"] == expected  # whole and half pixels: exact in floats
        assert read["dets"]["class_name"] == [p["class"] for p in direct["predictions"]]


def _crop_pixels(path: Path, prediction: dict) -> np.ndarray:
    pixels = cv2.imread(str(path))
    x1, y1, x2, y2 = (int(round(v)) for v in (prediction["x"] - prediction["width"] / 2,
                      prediction["y"] - prediction["height"] / 2, prediction["x"] + prediction["width"] / 2,
                      prediction["y"] + prediction["height"] / 2))  # fmt: skip
    return pixels[max(y1, 0) : y2, max(x1, 0) : x2]


def test_dynamic_crop_equals_slicing_and_the_classifier_nests_per_image(
    fixture_server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    spec = workflow(
        [detector(), {"type": "roboflow_core/dynamic_crop@v1", "name": "crop", "images": "$inputs.image",
                      "predictions": "$steps.det.predictions"},
         {"type": "ClassificationModel", "name": "cls", "images": "$steps.crop.crops",
          "model_id": "shapes-classify/1"}],
        {"dets": "$steps.det.predictions", "crops": "$steps.crop.crops", "classes": "$steps.cls.predictions"},
    )  # fmt: skip
    result = run_sdk(fixture_server, spec, DETECT, tmp_path)
    for output, path in zip(result["outputs"], DETECT):
        detections = output["dets"]["predictions"]
        assert len(output["crops"]) == len(output["classes"]) == len(detections) >= 3  # nested per image
        for prediction, crop, classified in zip(detections, output["crops"], output["classes"]):
            sliced = _crop_pixels(path, prediction)
            decoded = cv2.imdecode(np.frombuffer(base64.b64decode(crop), np.uint8), cv2.IMREAD_COLOR)
            assert decoded.shape == sliced.shape
            assert np.abs(decoded.astype(int) - sliced).mean() < 8  # the same pixels, through a JPEG
            direct = infer(http, "classification", "shapes-classify/1", encode(sliced, ".png"))
            assert classified["top"] == direct["top"]
            assert classified["confidence"] == pytest.approx(direct["confidence"])
            assert classified["parent_id"] == prediction["detection_id"]  # the crop is named after its detection


def test_continue_if_gates_per_image_with_nulls(fixture_server: Server, tmp_path: Path) -> None:
    """Image 0 has 4 shapes, image 1 has 3: `count >= 4` lets only image 0 through."""
    gate = {"type": "roboflow_core/continue_if@v1", "name": "gate", "next_steps": ["$steps.second"],
            "evaluation_parameters": {"n": "$steps.count.output", "least": "$inputs.least"},
            "condition_statement": {"type": "StatementGroup", "statements": [{"type": "BinaryStatement",
                "left_operand": {"type": "DynamicOperand", "operand_name": "n"}, "comparator": {"type": "(Number) >="},
                "right_operand": {"type": "DynamicOperand", "operand_name": "least"}}]}}  # fmt: skip
    count = {"type": "roboflow_core/property_definition@v1", "name": "count", "data": "$steps.det.predictions",
             "operations": [{"type": "SequenceLength"}]}  # fmt: skip
    spec = workflow([detector(), count, gate, detector("second")],
                    {"count": "$steps.count.output", "second": "$steps.second.predictions"}, {"least": 4})
    outputs = run_sdk(fixture_server, spec, DETECT, tmp_path)["outputs"]
    assert [output["count"] for output in outputs] == [4, 3]
    assert outputs[0]["second"]["predictions"] and outputs[1]["second"] is None


def test_filter_by_class_and_confidence_equals_filtering_infer(
    fixture_server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    step = {"type": "DetectionsFilter", "name": "only", "predictions": "$steps.det.predictions",
            "operations": by_class_filter(["triangle", "circle"], 0.0),
            "operations_parameters": {"minimum": "$inputs.minimum"}}  # fmt: skip
    spec = workflow([detector(), step], {"kept": "$steps.only.predictions"}, {"minimum": 0.88})
    outputs = run_sdk(fixture_server, spec, DETECT, tmp_path)["outputs"]
    for output, path in zip(outputs, DETECT):
        direct = without_ids(infer(http, "object_detection", "shapes-detect/1", path.read_bytes()))
        expected = [p for p in direct if p["class"] in ("triangle", "circle") and p["confidence"] >= 0.88]
        assert boxes(output["kept"]["predictions"]) == expected
    assert sum(len(output["kept"]["predictions"]) for output in outputs) >= 2


def test_static_crop_detections_in_parent_and_own_coordinates(
    fixture_server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    crop = {"type": "roboflow_core/absolute_static_crop@v1", "name": "half", "images": "$inputs.image",
            "x_center": 240, "y_center": 160, "width": 160, "height": 320}  # fmt: skip
    spec = {**workflow([crop, {**detector(), "images": "$steps.half.crops"}], {"parent": "$steps.det.predictions"}),}
    spec["outputs"].append({"type": "JsonField", "name": "own", "selector": "$steps.det.predictions",
                            "coordinates_system": "own"})  # fmt: skip
    (output,) = run_sdk(fixture_server, spec, DETECT[1:], tmp_path)["outputs"]
    direct = infer(http, "object_detection", "shapes-detect/1", encode(cv2.imread(str(DETECT[1]))[:, 160:], ".png"))
    assert boxes(output["own"]["predictions"]) == without_ids(direct) and direct["predictions"]
    shifted = [{**p, "x": p["x"] + 160} for p in without_ids(direct)]
    assert boxes(output["parent"]["predictions"]) == shifted
    assert output["parent"]["image"] == {"width": 320, "height": 320}
    assert output["parent"]["predictions"][0]["root_parent_origin"] == {"offset_x": 160, "offset_y": 0,
                                                                        "width": 320, "height": 320}


@pytest.mark.parametrize(
    ("type_id", "model", "task", "image"),
    [
        ("InstanceSegmentationModel", "shapes-segment/1", "instance_segmentation", "segment_0.jpg"),
        ("roboflow_core/roboflow_keypoint_detection_model@v2", "shapes-pose/1", "keypoints_detection", "pose_0.jpg"),
    ],
)
def test_segmentation_and_keypoint_steps_equal_infer(
    fixture_server: Server, http: httpx.Client, tmp_path: Path, type_id: str, model: str, task: str, image: str
) -> None:
    path = FIXTURES / "images" / image
    spec = workflow([detector(type_id=type_id, model=model, confidence=0.5)], {"out": "$steps.det.predictions"})
    result = run_sdk(fixture_server, spec, [path], tmp_path, "--detections", "out")
    (output,) = result["outputs"]
    direct = infer(http, task, model, path.read_bytes(), confidence=0.5)
    served = boxes(output["out"]["predictions"])
    expected = [{k: v for k, v in p.items() if k not in ("detection_id", "mask_format")} for p in direct["predictions"]]
    assert served == expected and expected
    assert len(result["supervision"][0]["out"]["xyxy"]) == len(expected)


def test_multi_label_classification_step(fixture_server: Server, http: httpx.Client, tmp_path: Path) -> None:
    path = FIXTURES / "images" / "classify_0.jpg"
    step = {"type": "roboflow_core/roboflow_multi_label_classification_model@v2", "name": "tags",
            "images": "$inputs.image", "model_id": "shapes-multilabel/1"}  # fmt: skip
    (output,) = run_sdk(fixture_server, workflow([step], {"tags": "$steps.tags.*"}), [path], tmp_path)["outputs"]
    direct = infer(http, "classification", "shapes-multilabel/1", path.read_bytes())
    assert output["tags"]["predictions"]["predicted_classes"] == direct["predicted_classes"]
    assert output["tags"]["predictions"]["predictions"] == direct["predictions"]
    assert set(output["tags"]) == {"inference_id", "predictions", "model_id"}


@pytest.mark.parametrize(("mode", "custom", "expected"), [("custom", 0.9, 0.9), ("default", 0.9, "default")])
def test_v3_model_steps_choose_confidence_by_mode(http: httpx.Client, mode: str, custom: float, expected: object):
    steps = [detector(type_id="roboflow_core/roboflow_object_detection_model@v3", confidence_mode=mode,
                      custom_confidence=custom),
             detector(name="seg", type_id="roboflow_core/roboflow_instance_segmentation_model@v3",
                      model="shapes-segment/1", confidence_mode=mode, custom_confidence=custom)]  # fmt: skip
    spec = workflow(steps, {"dets": "$steps.det.predictions", "masks": "$steps.seg.predictions"})
    image = DETECT[0].read_bytes()
    body = {"specification": spec, "inputs": {"image": {"type": "base64", "value": b64(image)}}}
    response = http.post("/workflows/run", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    direct = infer(http, "object_detection", "shapes-detect/1", image, confidence=expected)
    assert boxes(output["dets"]["predictions"]) == without_ids(direct) and direct["predictions"]
    segmented = infer(http, "instance_segmentation", "shapes-segment/1", image, confidence=expected)
    assert [p["class"] for p in output["masks"]["predictions"]] == [p["class"] for p in segmented["predictions"]]
