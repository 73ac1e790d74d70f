"""Every task, through the real HTTP server, on the project's own Ultralytics models (tests/fixtures):
predictions against the test images' ground truth, and against an independent decode of the same raw output."""

from __future__ import annotations

import base64

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import FIXTURES, Server, b64, ground_truth, image_value
from tests.reference_decode import center_crop, detections, full_mask, letterbox, metadata
from tests.test_rle import decode as decode_rle

ROUTES = {
    "detect": "/infer/object_detection",
    "segment": "/infer/instance_segmentation",
    "pose": "/infer/keypoints_detection",
    "obb": "/infer/obb",
    "classify": "/infer/classification",
}


@pytest.fixture(scope="module")
def http(fixture_server: Server):
    with fixture_server.client() as client:
        yield client


def images_of(task: str) -> list[tuple[str, dict]]:
    return [(name, truth) for name, truth in sorted(ground_truth().items()) if truth["task"] == task]


def read(name: str) -> bytes:
    return (FIXTURES / "images" / name).read_bytes()


def infer(http: httpx.Client, task: str, model_id: str, name: str, **options: object) -> dict:
    body = {"model_id": model_id, "image": {"type": "base64", "value": b64(read(name))}, **options}
    response = http.post(ROUTES[task], json=body)
    assert response.status_code == 200, response.text
    return response.json()


def box_iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - width * height
    return width * height / union if union > 0 else 0.0


def corners_of(prediction: dict) -> list[float]:
    x, y, w, h = (prediction[key] for key in ("x", "y", "width", "height"))
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


def raster(points: list, height: int, width: int) -> np.ndarray:
    canvas = np.zeros((height, width), dtype=np.uint8)
    if len(points) >= 3:
        cv2.fillPoly(canvas, [np.round(np.asarray(points, dtype=np.float64)).astype(np.int32)], 1)
    return canvas.astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def match(truths: list[dict], predictions: list[dict], overlap) -> list[tuple[dict, dict, float]]:
    """Greedy one-to-one pairs of the same class, best overlap first, overlap at least 0.5."""
    pairs = sorted(
        ((overlap(t, p), i, j) for i, t in enumerate(truths) for j, p in enumerate(predictions) if t["class"] == p["class"]),
        reverse=True,
    )
    used_t, used_p, matched = set(), set(), []
    for score, i, j in pairs:
        if score >= 0.5 and i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
            matched.append((truths[i], predictions[j], score))
    return matched


def scores(task: str, model_id: str, http: httpx.Client, overlap, **options: object) -> dict[str, float]:
    objects = predicted = 0
    matched: list[tuple[dict, dict, float]] = []
    for name, truth in images_of(task):
        predictions = infer(http, task, model_id, name, **options)["predictions"]
        objects += len(truth["objects"])
        predicted += len(predictions)
        matched += match(truth["objects"], predictions, overlap)
    return {
        "recall": len(matched) / objects,
        "precision": len(matched) / max(predicted, 1),
        "overlap": float(np.mean([score for _, _, score in matched])),
        "pairs": matched,  # type: ignore[dict-item]
    }


# --- ground truth, through HTTP ---


@pytest.mark.parametrize(
    "model_id",
    ["shapes-detect/1", "shapes-detect-dynamic/1", "shapes-detect-nms/1", "shapes-detect-v5classic/1",
     "shapes-detect-v5u/1", "shapes-detect-yolo11/1"],
)
def test_detection_finds_the_shapes(http: httpx.Client, model_id: str) -> None:
    result = scores("detect", model_id, http, lambda t, p: box_iou(t["box"], corners_of(p)), confidence=0.5)
    assert result["recall"] >= 0.9 and result["precision"] >= 0.85 and result["overlap"] >= 0.8, result


def test_segmentation_masks_match_the_shapes(http: httpx.Client) -> None:
    def overlap(truth: dict, prediction: dict) -> float:
        polygon = [[p["x"], p["y"]] for p in prediction["points"]]
        return mask_iou(raster(truth["polygon"], 320, 320), raster(polygon, 320, 320))

    accurate = scores("segment", "shapes-segment/1", http, overlap, confidence=0.3)
    assert accurate["recall"] >= 0.9 and accurate["precision"] >= 0.85 and accurate["overlap"] >= 0.8, accurate
    fast = scores("segment", "shapes-segment/1", http, overlap, confidence=0.3, mask_decode_mode="fast")
    assert fast["recall"] >= 0.8 and fast["overlap"] >= 0.6, fast
    for name, truth in images_of("segment"):
        rle = infer(http, "segment", "shapes-segment/1", name, confidence=0.5, response_mask_format="rle")
        for prediction in rle["predictions"]:
            assert "points" not in prediction and prediction["mask_format"] == "rle"
            mask = decode_rle(prediction["rle"])
            assert mask.shape == (truth["height"], truth["width"])
            best = max(mask_iou(mask, raster(o["polygon"], *mask.shape)) for o in truth["objects"])
            assert best >= 0.6 or prediction["confidence"] < 0.6


def test_keypoints_land_on_the_triangle_corners(http: httpx.Client) -> None:
    result = scores("pose", "shapes-pose/1", http, lambda t, p: box_iou(t["box"], corners_of(p)), confidence=0.5)
    assert result["recall"] >= 0.9 and result["precision"] >= 0.85, result
    errors = []
    for truth, prediction, _ in result["pairs"]:
        keypoints = prediction["keypoints"]
        assert [k["class"] for k in keypoints] == ["apex", "bottom_left", "bottom_right"]
        assert [k["class_id"] for k in keypoints] == [0, 1, 2]
        assert set(keypoints[0]) == {"x", "y", "confidence", "class_id", "class"}
        errors += [float(np.hypot(k["x"] - x, k["y"] - y)) for k, (x, y, _) in zip(keypoints, truth["keypoints"])]
    assert np.mean(errors) <= 8.0, errors


def test_oriented_boxes_match_the_rectangles(http: httpx.Client) -> None:
    def overlap(truth: dict, prediction: dict) -> float:
        return mask_iou(raster(truth["corners"], 320, 320), raster([[p["x"], p["y"]] for p in prediction["points"]], 320, 320))

    result = scores("obb", "shapes-obb/1", http, overlap, confidence=0.5)
    assert result["recall"] >= 0.9 and result["precision"] >= 0.85 and result["overlap"] >= 0.7, result
    for _, prediction, _ in result["pairs"]:
        assert len(prediction["points"]) == 4 and -np.pi <= prediction["angle"] <= np.pi
        quad = np.array([[p["x"], p["y"]] for p in prediction["points"]])
        assert np.allclose(quad.mean(axis=0), [prediction["x"], prediction["y"]], atol=1e-3)


def test_classification_top_1(http: httpx.Client) -> None:
    for name, truth in images_of("classify"):
        result = infer(http, "classify", "shapes-classify/1", name)
        assert result["top"] == truth["label"], (name, result)
        confidences = [p["confidence"] for p in result["predictions"]]
        assert confidences == sorted(confidences, reverse=True) and all(c >= 0.4 for c in confidences)
        assert result["confidence"] == confidences[0] and all(round(c, 4) == c for c in confidences)
        assert set(result) == {"inference_id", "time", "image", "predictions", "top", "confidence"}
        none = infer(http, "classify", "shapes-classify/1", name, confidence=1.01)
        assert none["predictions"] == [] and none["top"] == "" and none["confidence"] == 0.0


def test_multilabel_classification_shape(http: httpx.Client) -> None:
    name, truth = images_of("classify")[0]
    result = infer(http, "classify", "shapes-multilabel/1", name, confidence=0.5)
    assert set(result) == {"inference_id", "time", "image", "predictions", "predicted_classes"}
    assert set(result["predictions"]) == {"circle", "square", "triangle"}
    assert result["predictions"]["circle"]["class_id"] == 0
    assert result["predicted_classes"] == [truth["label"]]


# --- the same raw output, decoded independently ---


def session(file_name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(FIXTURES / "models" / file_name), providers=["CPUExecutionProvider"])


def decoded(name: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(read(name), np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("name", [name for name, _ in images_of("segment")])
def test_segmentation_equals_an_independent_decode(http: httpx.Client, name: str) -> None:
    model = session("shapes-segment.onnx")
    meta = metadata(model)
    side = meta["imgsz"][0]
    boxed = letterbox(decoded(name), side)
    output0, protos = model.run(None, {"images": boxed.tensor})
    expected = detections(output0[0].T, len(meta["names"]), 0.3, 0.3)
    actual = infer(http, "segment", "shapes-segment/1", name, confidence=0.3, iou_threshold=0.3)["predictions"]
    assert len(actual) == len(expected)
    height, width = boxed.height, boxed.width
    for mine, theirs in zip(sorted(actual, key=lambda p: -p["confidence"]), sorted(expected, key=lambda d: -d.score)):
        assert mine["class_id"] == theirs.class_id and abs(mine["confidence"] - theirs.score) < 1e-3
        box = boxed.to_image(theirs.box.reshape(2, 2)).reshape(4)
        assert max(abs(a - b) for a, b in zip(corners_of(mine), box)) <= 1.0
        mask = full_mask(protos[0], theirs.extra, theirs.box, side)  # input resolution, like accurate mode
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        outline = boxed.to_image(max(contours, key=len).reshape(-1, 2).astype(np.float64))
        reference = raster(outline.tolist(), height, width)
        polygon = raster([[p["x"], p["y"]] for p in mine["points"]], height, width)
        assert mask_iou(polygon, reference) >= 0.9


@pytest.mark.parametrize("name", [name for name, _ in images_of("pose")])
def test_keypoints_equal_an_independent_decode(http: httpx.Client, name: str) -> None:
    model = session("shapes-pose.onnx")
    meta = metadata(model)
    boxed = letterbox(decoded(name), meta["imgsz"][0])
    expected = detections(model.run(None, {"images": boxed.tensor})[0][0].T, len(meta["names"]), 0.3, 0.3)
    actual = infer(http, "pose", "shapes-pose/1", name, confidence=0.3, iou_threshold=0.3)["predictions"]
    assert len(actual) == len(expected)
    for mine, theirs in zip(sorted(actual, key=lambda p: -p["confidence"]), sorted(expected, key=lambda d: -d.score)):
        keypoints = theirs.extra.reshape(meta["kpt_shape"])
        positions = boxed.to_image(keypoints[:, :2])
        for keypoint, (x, y), visibility in zip(mine["keypoints"], positions, keypoints[:, 2]):
            assert abs(keypoint["x"] - x) <= 1 and abs(keypoint["y"] - y) <= 1
            assert abs(keypoint["confidence"] - visibility) < 1e-4


@pytest.mark.parametrize("name", [name for name, _ in images_of("obb")])
def test_oriented_boxes_equal_an_independent_decode(http: httpx.Client, name: str) -> None:
    model = session("shapes-obb.onnx")
    meta = metadata(model)
    classes = len(meta["names"])
    boxed = letterbox(decoded(name), meta["imgsz"][0])
    rows = model.run(None, {"images": boxed.tensor})[0][0].T  # cx, cy, w, h, scores, angle
    best, class_ids = rows[:, 4 : 4 + classes].max(1), rows[:, 4 : 4 + classes].argmax(1)
    keep = best >= 0.3
    rows, best, class_ids = rows[keep], best[keep], class_ids[keep]
    rotated = [((cx, cy), (w, h), np.degrees(a)) for cx, cy, w, h, a in rows[:, [0, 1, 2, 3, 4 + classes]].tolist()]
    kept = np.asarray(cv2.dnn.NMSBoxesRotated(rotated, best.tolist(), 0.3, 0.3)).reshape(-1)
    actual = infer(http, "obb", "shapes-obb/1", name, confidence=0.3, iou_threshold=0.3)["predictions"]
    assert len(actual) == len(kept)
    for mine, index in zip(sorted(actual, key=lambda p: -p["confidence"]), sorted(kept, key=lambda i: -best[i])):
        assert mine["class_id"] == class_ids[index] and abs(mine["confidence"] - best[index]) < 1e-3
        quad = boxed.to_image(cv2.boxPoints(rotated[index]).astype(np.float64))
        mine_quad = np.array([[p["x"], p["y"]] for p in mine["points"]])
        assert mask_iou(raster(quad.tolist(), 320, 320), raster(mine_quad.tolist(), 320, 320)) >= 0.97


@pytest.mark.parametrize("name", [name for name, _ in images_of("classify")])
def test_classification_equals_an_independent_decode(http: httpx.Client, name: str) -> None:
    model = session("shapes-classify.onnx")
    meta = metadata(model)
    probabilities = model.run(None, {"images": center_crop(decoded(name), meta["imgsz"][0])})[0][0]
    actual = infer(http, "classify", "shapes-classify/1", name, confidence=0.0)
    assert [p["class_id"] for p in actual["predictions"]] == np.argsort(-probabilities).tolist()
    for prediction in actual["predictions"]:
        assert prediction["confidence"] == pytest.approx(float(probabilities[prediction["class_id"]]), abs=1e-4)


@pytest.mark.parametrize(
    ("model_id", "file_name"),
    [("shapes-detect-v5classic/1", "shapes-detect-v5classic.onnx"), ("shapes-detect-nms/1", "shapes-detect-nms.onnx")],
)
def test_other_detection_layouts_equal_the_plain_export(http: httpx.Client, model_id: str, file_name: str) -> None:
    """The classic-YOLOv5 and NMS-in-graph exports of the same weights give the plain export's answers."""
    for name, _ in images_of("detect"):
        plain = infer(http, "detect", "shapes-detect/1", name, confidence=0.5)["predictions"]
        other = infer(http, "detect", model_id, name, confidence=0.5)["predictions"]
        strip = lambda ps: [(p["class"], round(p["confidence"], 3), corners_of(p)) for p in ps]
        assert len(strip(plain)) == len(strip(other))
        for (c1, s1, b1), (c2, s2, b2) in zip(strip(plain), strip(other)):
            assert c1 == c2 and abs(s1 - s2) <= 1e-3 and max(abs(a - b) for a, b in zip(b1, b2)) <= 1.0


# --- routes, the legacy route, visualizations ---


def test_a_route_refuses_a_model_of_another_task(http: httpx.Client) -> None:
    body = {"model_id": "shapes-segment/1", "image": image_value(decoded("segment_0.jpg"))}
    response = http.post("/infer/object_detection", json=body)
    assert response.status_code == 400
    assert "instance-segmentation model" in response.json()["message"] and "object-detection" in response.json()["message"]
    wrong_options = http.post("/infer/instance_segmentation", json={**body, "mask_decode_mode": "sloppy"})
    assert wrong_options.status_code == 400 and "mask_decode_mode" in wrong_options.json()["message"]
    best = http.post("/infer/keypoints_detection", json={**body, "model_id": "shapes-pose/1", "confidence": "best"})
    assert best.status_code == 422


@pytest.mark.parametrize(
    ("model_id", "name", "key"),
    [("shapes-segment/1", "segment_0.jpg", "points"), ("shapes-pose/1", "pose_0.jpg", "keypoints"),
     ("shapes-obb/1", "obb_0.jpg", "angle"), ("shapes-classify/1", "classify_0.jpg", None)],
)
def test_the_legacy_route_serves_every_task(http: httpx.Client, model_id: str, name: str, key: str | None) -> None:
    result = http.post(f"/{model_id}", content=read(name), params={"format": "image_and_json"}).json()
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(result["visualization"]), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (320, 320, 3)
    if key is None:
        assert result["top"] == "circle"
    else:
        assert result["predictions"] and key in result["predictions"][0]
    rle = http.post("/shapes-segment/1", content=read("segment_0.jpg"), params={"response_mask_format": "rle"}).json()
    assert rle["predictions"][0]["mask_format"] == "rle"


@pytest.mark.parametrize("task", sorted(ROUTES))
def test_visualizations_for_every_task(http: httpx.Client, task: str) -> None:
    model_id = {"detect": "shapes-detect/1", "segment": "shapes-segment/1", "pose": "shapes-pose/1",
                "obb": "shapes-obb/1", "classify": "shapes-classify/1"}[task]
    name = images_of(task)[0][0]
    result = infer(http, task, model_id, name, visualize_predictions=True, visualization_labels=True)
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(result["visualization"]), np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(picture.astype(int) - decoded(name).astype(int)).max() > 100


def test_registry_reports_every_task(http: httpx.Client) -> None:
    for model_id in ("shapes-segment/1", "shapes-pose/1", "shapes-obb/1", "shapes-classify/1"):
        http.post("/model/add", json={"model_id": model_id})
    tasks = {m["model_id"]: m["task_type"] for m in http.get("/model/registry").json()["models"]}
    assert tasks["shapes-segment/1"] == "instance-segmentation" and tasks["shapes-pose/1"] == "keypoint-detection"
    assert tasks["shapes-obb/1"] == "oriented-object-detection" and tasks["shapes-classify/1"] == "classification"


def test_batches_work_for_every_task(http: httpx.Client) -> None:
    for task, model_id in (("segment", "shapes-segment/1"), ("pose", "shapes-pose/1"), ("classify", "shapes-classify/1")):
        names = [name for name, _ in images_of(task)]
        body = {"model_id": model_id, "image": [{"type": "base64", "value": b64(read(n))} for n in names]}
        batch = http.post(ROUTES[task], json=body).json()
        singles = [infer(http, task, model_id, name) for name in names]
        assert [len(r["predictions"]) for r in batch] == [len(r["predictions"]) for r in singles]
