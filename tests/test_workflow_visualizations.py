"""Workflow visualisation blocks (bounding box, label, mask, polygon, keypoint, blur): each drawn on the fixture
photos with detections made as the engine makes them (`Detections.from_core` of a core-shaped answer built from
the images' ground truth), checked pixel by pixel against what the reference draws; plus one real
detect -> bounding box -> label workflow over HTTP."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import cv2
import numpy as np
import pydantic
import pytest

from tests.conftest import FIXTURES, Server, ground_truth, image_value
from visionserve.workflows.blocks import (
    blur_visualization, bounding_box_visualization, keypoint_visualization, label_visualization,
    mask_visualization, polygon_visualization,
)  # fmt: skip
from visionserve.workflows.blocks.base import StepContext
from visionserve.workflows.blocks.registry import block_for
from visionserve.workflows.errors import StepInputError
from visionserve.workflows.values import Detections, WorkflowImage

CLASS_IDS = {"circle": 0, "square": 1, "triangle": 2}  # the shapes fixture models' names
KEYPOINT_NAMES = ("apex", "bottom_left", "bottom_right")


def bgr(hex_rgb: str) -> tuple[int, int, int]:
    return int(hex_rgb[5:7], 16), int(hex_rgb[3:5], 16), int(hex_rgb[1:3], 16)


# supervision's ColorPalette.DEFAULT, first entries (the reference's `color_palette: DEFAULT`), by class id.
DEFAULT_COLORS = [bgr("#A351FB"), bgr("#FF4040"), bgr("#FFA1A0")]


def fixture_image(name: str) -> WorkflowImage:
    pixels = cv2.imread(str(FIXTURES / "images" / name))
    return WorkflowImage.input(pixels, "image")


def detections_for(name: str, image: WorkflowImage) -> Detections:
    """The image's true objects as a core answer (the JSON /infer gives), read the way model steps read it."""
    predictions: list[dict[str, Any]] = []
    for index, item in enumerate(ground_truth()[name]["objects"]):
        x1, y1, x2, y2 = item["box"]
        prediction = {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "width": x2 - x1, "height": y2 - y1,
                      "confidence": 0.9 - index / 100, "class": item["class"],
                      "class_id": CLASS_IDS[item["class"]], "detection_id": f"d{index}"}  # fmt: skip
        if "polygon" in item:
            prediction["points"] = [{"x": x, "y": y} for x, y in item["polygon"]]
        if "keypoints" in item:
            prediction["keypoints"] = [
                {"x": x, "y": y, "confidence": 0.9, "class_id": k, "class": KEYPOINT_NAMES[k]}
                for k, (x, y, _) in enumerate(item["keypoints"])
            ]
        predictions.append(prediction)
    answer = {"image": {"width": image.width, "height": image.height}, "predictions": predictions}
    return Detections.from_core(answer, image)


def no_model(*args: Any) -> list[dict[str, Any]]:
    raise AssertionError("visualisation blocks run no model")


def draw(module: Any, image: WorkflowImage, detections: Detections, **properties: Any) -> np.ndarray:
    """Run the block on one element as the engine does: validated manifest, every property's value."""
    block = module.BLOCK
    step = block.manifest.model_validate({"type": block.type_id, "name": "vis", "image": "$inputs.image",
                                          "predictions": "$steps.det.predictions", **properties})  # fmt: skip
    inputs = {**step.model_dump(), "image": image, "predictions": detections}
    [outputs] = block.run(step, [inputs], StepContext("vis", no_model, 100))
    assert set(outputs) == {"image"}
    drawn = outputs["image"]
    assert isinstance(drawn, WorkflowImage) and drawn.image_id == image.image_id
    return drawn.pixels


def drawn_on(name: str, module: Any, **properties: Any) -> tuple[Detections, np.ndarray, np.ndarray]:
    """A fixture image's true objects drawn by `module`: (detections, pixels before, pixels after)."""
    image = fixture_image(name)
    detections = detections_for(name, image)
    before = image.pixels.copy()
    after = draw(module, image, detections, **properties)
    assert np.array_equal(image.pixels, before)  # copy_image (default true): the input is untouched
    return detections, before, after


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


def int_boxes(detections: Detections) -> list[tuple[int, int, int, int]]:
    return [tuple(int(v) for v in box) for box in detections.xyxy]


def test_every_visualization_is_registered_with_its_alias() -> None:
    for type_id, alias in [("roboflow_core/bounding_box_visualization@v1", "BoundingBoxVisualization"),
                           ("roboflow_core/label_visualization@v1", "LabelVisualization"),
                           ("roboflow_core/mask_visualization@v1", "MaskVisualization"),
                           ("roboflow_core/polygon_visualization@v1", "PolygonVisualization"),
                           ("roboflow_core/keypoint_visualization@v1", "KeypointVisualization"),
                           ("roboflow_core/blur_visualization@v1", "BlurVisualization")]:  # fmt: skip
        block = block_for(type_id)
        assert block is not None and block_for(alias) is block
        assert [output.name for output in block.outputs] == ["image"] and block.outputs[0].kinds == ("image",)
        defaults = block.manifest.model_validate({"type": alias, "name": "s", "images": "$inputs.image",
                                                  "predictions": "$steps.d.predictions"})  # fmt: skip
        assert defaults.image == "$inputs.image" and defaults.copy_image is True  # `images` is the alias


def test_boxes_are_drawn_on_their_edges_in_their_class_colour_and_nowhere_else() -> None:
    detections, before, after = drawn_on("detect_0.jpg", bounding_box_visualization, thickness=2)
    band = np.zeros(before.shape[:2], dtype=bool)
    for (x1, y1, x2, y2), class_id in zip(int_boxes(detections), detections.class_id):
        color = DEFAULT_COLORS[class_id]
        edges = after[y1, x1 : x2 + 1], after[y2, x1 : x2 + 1], after[y1 : y2 + 1, x1], after[y1 : y2 + 1, x2]
        assert all((edge == color).all() for edge in edges)
        outer = np.zeros_like(band)
        outer[max(y1 - 1, 0) : y2 + 2, max(x1 - 1, 0) : x2 + 2] = True
        outer[y1 + 2 : y2 - 1, x1 + 2 : x2 - 1] = False  # a 2-pixel line straddles the edge
        band |= outer
        assert np.array_equal(after[y1 + 3 : y2 - 2, x1 + 3 : x2 - 2], before[y1 + 3 : y2 - 2, x1 + 3 : x2 - 2])
    assert changed(before, after)[~band].sum() == 0


def test_copy_image_false_draws_on_the_input_and_true_does_not() -> None:
    image = fixture_image("detect_0.jpg")
    detections = detections_for("detect_0.jpg", image)
    before = image.pixels.copy()
    copied = draw(bounding_box_visualization, image, detections, copy_image=True)
    assert not np.shares_memory(copied, image.pixels) and np.array_equal(image.pixels, before)
    in_place = draw(bounding_box_visualization, image, detections, copy_image=False)
    assert np.shares_memory(in_place, image.pixels)
    assert changed(before, image.pixels).any() and np.array_equal(in_place, copied)


def test_color_axis_index_custom_palette_and_rounded_corners() -> None:
    image = fixture_image("detect_0.jpg")
    detections = detections_for("detect_0.jpg", image)
    by_index = draw(bounding_box_visualization, image, detections, color_axis="INDEX", color_palette="CUSTOM",
                    custom_colors=["#00FF00", "rgb(0, 0, 255)"])  # fmt: skip
    for index, (x1, y1, x2, y2) in enumerate(int_boxes(detections)):
        assert tuple(by_index[(y1 + y2) // 2, x1]) == [(0, 255, 0), (255, 0, 0)][index % 2]
    x1, y1, x2, y2 = int_boxes(detections)[0]
    round_box = draw(bounding_box_visualization, image, detections, roundness=1.0)
    assert tuple(round_box[y1, x1]) != DEFAULT_COLORS[2]  # the corner is cut...
    assert tuple(round_box[y1, (x1 + x2) // 2]) == DEFAULT_COLORS[2]  # ...the edge's middle is drawn


def test_track_colours_need_tracker_ids_and_bad_values_are_named() -> None:
    image = fixture_image("detect_0.jpg")
    detections = detections_for("detect_0.jpg", image)
    with pytest.raises(StepInputError, match="color_axis TRACK needs tracked detections"):
        draw(bounding_box_visualization, image, detections, color_axis="TRACK")
    with pytest.raises(StepInputError, match="Invalid colour 'no-such-colour'"):
        draw(label_visualization, image, detections, text_color="no-such-colour")
    with pytest.raises(StepInputError, match="thickness must be a whole number from 1 to 1000"):
        draw(bounding_box_visualization, image, detections, thickness=0)
    with pytest.raises(pydantic.ValidationError, match="color_palette"):
        draw(bounding_box_visualization, image, detections, color_palette="NOPE")
    tracked = dataclasses.replace(detections, tracker_id=np.array([5, 6, 7, 8]))
    by_track = draw(bounding_box_visualization, image, tracked, color_axis="TRACK",
                    color_palette="Matplotlib Viridis", palette_size=2)  # fmt: skip
    viridis_top = cv2.applyColorMap(np.array([[255]], dtype=np.uint8), cv2.COLORMAP_VIRIDIS)[0, 0]
    x1, y1, x2, _ = int_boxes(detections)[1]  # tracker id 6: palette entry 0; id 5: entry 1 (yellow end)
    assert tuple(by_track[y1, (x1 + x2) // 2]) != tuple(viridis_top)
    x1, y1, x2, _ = int_boxes(detections)[0]
    assert tuple(by_track[y1, (x1 + x2) // 2]) == tuple(viridis_top)


@pytest.mark.parametrize("module", [bounding_box_visualization, label_visualization, mask_visualization,
                                    polygon_visualization, keypoint_visualization, blur_visualization])
def test_far_off_and_nan_coordinates_draw_without_failing(module: Any) -> None:
    image = fixture_image("pose_0.jpg")
    far, nan = 1e15, float("nan")
    answer = {"image": {"width": 320, "height": 320}, "predictions": [
        {"x": x, "y": y, "width": 10.0, "height": 10.0, "confidence": 0.9, "class_id": 0, "class": "c",
         "points": [{"x": x, "y": y}, {"x": -x, "y": y}, {"x": x, "y": 5.0}],
         "keypoints": [{"x": x, "y": y, "confidence": 1.0, "class_id": 0, "class": "k"},
                       {"x": 5.0, "y": -x, "confidence": 1.0, "class_id": 1, "class": "k"}]}
        for x, y in [(far, far), (nan, 5.0)]]}  # fmt: skip
    drawn = draw(module, image, Detections.from_core(answer, image), annotator_type="vertex")
    assert drawn.shape == image.pixels.shape


def label_box(before: np.ndarray, after: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The bounding box of the pixels a label changed near `box`'s top-left corner."""
    left, top = max(box[0] - 1, 0), max(box[1] - 80, 0)
    ys, xs = np.nonzero(changed(before, after)[top : box[1] + 1, left : box[0] + 200])
    return xs.min() + left, ys.min() + top, xs.max() + left, ys.max() + top


def test_labels_put_readable_text_above_the_box() -> None:
    image = fixture_image("detect_0.jpg")
    detections = detections_for("detect_0.jpg", image).selected(np.array([1]))  # a triangle well below the top
    (x1, y1, x2, y2), = int_boxes(detections)
    before = image.pixels.copy()
    after = draw(label_visualization, image, detections, text_scale=0.5, text_padding=4)
    region = changed(before, after)
    assert region[y1 + 1 :].sum() == 0  # nothing on or below the box's top edge...
    lx1, ly1, lx2, ly2 = label_box(before, after, (x1, y1, x2, y2))
    assert (lx1, ly2) == (x1, y1)  # ...the label sits on the box's top-left corner, above it
    (text_width, text_height), baseline = cv2.getTextSize("triangle", cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    assert lx2 - lx1 + 1 == text_width + 2 * 4 + 1 and ly2 - ly1 + 1 == text_height + baseline + 2 * 4 + 1
    label = after[ly1 : ly2 + 1, lx1 : lx2 + 1]
    background = np.all(label == DEFAULT_COLORS[2], axis=2)
    white = np.all(label >= 200, axis=2)
    assert background.mean() > 0.6 and white.sum() > 40  # a box in the class colour, with white strokes on it
    index_label = draw(label_visualization, image, detections, text_scale=0.5, text_padding=4, text="Index")
    assert not np.array_equal(index_label, after)  # the text itself is drawn: "0" is not "triangle"


def test_labels_of_a_box_at_the_top_stay_inside_the_image() -> None:
    image = fixture_image("detect_0.jpg")
    detections = detections_for("detect_0.jpg", image).selected(np.array([3]))  # top edge at y=14
    after = draw(label_visualization, image, detections, text="Class and Confidence", border_radius=5)
    rows = np.nonzero(changed(image.pixels, after).any(axis=1))[0]
    (_, text_height), baseline = cv2.getTextSize("square 0.87", cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
    assert (rows.min(), rows.max()) == (0, text_height + baseline + 2 * 10)  # moved down whole, not cut off


def polygon_mask(polygon: np.ndarray, shape: tuple[int, ...], grow: int) -> np.ndarray:
    """Pixels inside the polygon, shrunk (grow < 0) or grown (grow > 0) by |grow| pixels."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
    kernel = np.ones((2 * abs(grow) + 1, 2 * abs(grow) + 1), np.uint8)
    return (cv2.dilate(mask, kernel) if grow > 0 else cv2.erode(mask, kernel)) > 0


@pytest.mark.parametrize("opacity", [0.5, 0.2, 1.0])
def test_masks_blend_at_the_given_opacity_inside_the_polygon_only(opacity: float) -> None:
    detections, before, after = drawn_on("segment_0.jpg", mask_visualization, opacity=opacity)
    outside = np.ones(before.shape[:2], dtype=bool)
    for polygon, class_id in zip(detections.polygons, detections.class_id):
        inside = polygon_mask(polygon, before.shape, -2)
        expected = opacity * np.array(DEFAULT_COLORS[class_id]) + (1 - opacity) * before[inside].astype(float)
        assert np.abs(after[inside].astype(float) - expected).max() <= 1.0
        outside &= ~polygon_mask(polygon, before.shape, 2)
    assert np.array_equal(after[outside], before[outside])


def test_a_small_mask_inside_a_large_one_stays_visible() -> None:
    image = fixture_image("segment_0.jpg")
    squares = [(120, 120, 20, 1), (100, 100, 100, 0)]  # (x, y, size, class id): the small one first
    answer = {"image": {"width": 320, "height": 320}, "predictions": [
        {"x": x + s / 2, "y": y + s / 2, "width": s, "height": s, "confidence": 0.9, "class_id": c, "class": "c",
         "points": [{"x": x, "y": y}, {"x": x + s, "y": y}, {"x": x + s, "y": y + s}, {"x": x, "y": y + s}]}
        for x, y, s, c in squares]}  # fmt: skip
    after = draw(mask_visualization, image, Detections.from_core(answer, image), opacity=1.0)
    assert tuple(after[130, 130]) == DEFAULT_COLORS[1] and tuple(after[110, 110]) == DEFAULT_COLORS[0]


def test_polygons_are_outlined_in_their_class_colour() -> None:
    detections, before, after = drawn_on("segment_0.jpg", polygon_visualization, thickness=2)
    near_edges = np.zeros(before.shape[:2], dtype=bool)
    for polygon, class_id in zip(detections.polygons, detections.class_id):
        x, y = np.round(polygon[0]).astype(int)
        assert tuple(after[y, x]) == DEFAULT_COLORS[class_id]  # a vertex is on the outline
        near_edges |= polygon_mask(polygon, before.shape, 2) & ~polygon_mask(polygon, before.shape, -2)
    assert changed(before, after)[~near_edges].sum() == 0  # the insides keep their pixels
    no_masks = detections_for("detect_0.jpg", fixture_image("detect_0.jpg"))
    assert np.array_equal(draw(polygon_visualization, no_masks.image, no_masks), no_masks.image.pixels)


def test_blur_lowers_the_variance_inside_each_box_and_leaves_outside_pixels_equal() -> None:
    detections, before, after = drawn_on("detect_0.jpg", blur_visualization, kernel_size=15)
    outside = np.ones(before.shape[:2], dtype=bool)
    for x1, y1, x2, y2 in int_boxes(detections):
        sharp = cv2.Laplacian(cv2.cvtColor(before[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
        blurred = cv2.Laplacian(cv2.cvtColor(after[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
        assert blurred < sharp / 4
        assert after[y1:y2, x1:x2].var() < before[y1:y2, x1:x2].var()
        outside[y1:y2, x1:x2] = False
    assert np.array_equal(after[outside], before[outside])


def test_keypoints_are_drawn_at_their_points() -> None:
    image = fixture_image("pose_0.jpg")
    detections = detections_for("pose_0.jpg", image)
    points = [(int(k["x"]), int(k["y"])) for k in detections.keypoints[0]]
    before = image.pixels.copy()
    purple = bgr("#A351FB")  # the block's default colour
    dots = draw(keypoint_visualization, image, detections, annotator_type="vertex", radius=4)
    near = np.zeros(before.shape[:2], dtype=bool)
    for x, y in points:
        assert (dots[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] == purple).all()
        cv2.circle(near.view(np.uint8), (x, y), 6, 1, -1)
    assert changed(before, dots)[~near].sum() == 0
    one_edge = draw(keypoint_visualization, image, detections, annotator_type="edge", edges=[[1, 3]], thickness=3)
    (ax, ay), _, (cx, cy) = points
    assert tuple(one_edge[(ay + cy) // 2, (ax + cx) // 2]) == purple  # apex to bottom_right is drawn...
    (bx, by) = points[1]
    middle = (ay + by) // 2, (ax + bx) // 2
    assert tuple(one_edge[middle]) == tuple(before[middle])  # ...only that one
    labels = draw(keypoint_visualization, image, detections, annotator_type="vertex_label", color="WHITE")
    assert changed(before, labels)[ay, ax] and (labels[by, bx] != before[by, bx]).any()


def test_keypoint_visualization_refuses_boxes_without_keypoints() -> None:
    image = fixture_image("detect_0.jpg")
    with pytest.raises(StepInputError, match="no keypoints"):
        draw(keypoint_visualization, image, detections_for("detect_0.jpg", image))


def test_detect_box_label_workflow_over_http(fixture_server: Server) -> None:
    pixels = cv2.imread(str(FIXTURES / "images" / "detect_4.jpg"))  # 480x320: not square
    definition = {
        "version": "1.0",
        "inputs": [{"type": "WorkflowImage", "name": "image"}],
        "steps": [
            {"type": "roboflow_core/roboflow_object_detection_model@v2", "name": "det", "images": "$inputs.image",
             "model_id": "shapes-detect/1"},
            {"type": "roboflow_core/bounding_box_visualization@v1", "name": "boxes", "image": "$inputs.image",
             "predictions": "$steps.det.predictions"},
            {"type": "LabelVisualization", "name": "labels", "image": "$steps.boxes.image",
             "predictions": "$steps.det.predictions", "text": "Class and Confidence"},
        ],
        "outputs": [{"type": "JsonField", "name": "annotated", "selector": "$steps.labels.image"},
                    {"type": "JsonField", "name": "dets", "selector": "$steps.det.predictions"}],
    }  # fmt: skip
    with fixture_server.client() as http:
        body = {"specification": definition, "inputs": {"image": image_value(pixels)}}
        response = http.post("/workflows/run", json=body)
    assert response.status_code == 200, response.text
    [outputs] = response.json()["outputs"]
    annotated = outputs["annotated"]
    assert annotated["type"] == "base64"
    data = base64.b64decode(annotated["value"])
    assert data[:3] == b"\xff\xd8\xff"  # JPEG
    drawn = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == pixels.shape
    predictions = outputs["dets"]["predictions"]
    assert predictions
    for prediction in predictions:  # each box's top edge is drawn in its class colour (JPEG: approximately)
        x, y, width = prediction["x"], prediction["y"] - prediction["height"] / 2, prediction["width"]
        edge = drawn[int(y), int(x - width / 4) : int(x + width / 4)].astype(int)
        assert np.abs(edge - DEFAULT_COLORS[prediction["class_id"]]).max(axis=1).mean() < 40
