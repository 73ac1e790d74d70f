import cv2
import numpy as np
import pytest

from visionserve.tasks.nms import batched_nms, nms


def random_boxes(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.uniform(0, 320, (count, 2))
    sizes = rng.uniform(5, 80, (count, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).astype(np.float32)
    return boxes, rng.uniform(0.05, 1.0, count).astype(np.float32)


def greedy_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Plain-Python greedy NMS, one pair at a time."""

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union > 0 else 0.0

    kept: list[int] = []
    for index in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(iou(boxes[index], boxes[other]) <= threshold for other in kept):
            kept.append(index)
    return kept


@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.5, 0.7])
def test_nms_matches_plain_greedy_and_opencv(threshold: float) -> None:
    rng = np.random.default_rng(int(threshold * 10))
    boxes, scores = random_boxes(rng, 400)
    kept = nms(boxes, scores, threshold, max_keep=1000).tolist()
    assert kept == greedy_reference(boxes, scores, threshold)
    xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes]
    opencv = cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.0, threshold)
    assert sorted(kept) == sorted(np.asarray(opencv).reshape(-1).tolist())


def test_nms_stops_at_max_keep_with_the_best_boxes() -> None:
    boxes, scores = random_boxes(np.random.default_rng(1), 200)
    full = nms(boxes, scores, 0.5, max_keep=1000)
    assert nms(boxes, scores, 0.5, max_keep=7).tolist() == full[:7].tolist()
    assert nms(boxes, scores, 0.5, max_keep=0).size == 0


def test_batched_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    boxes = np.array([[10, 10, 50, 50], [12, 12, 52, 52], [11, 11, 51, 51]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
    classes = np.array([0, 1, 0])
    assert batched_nms(boxes, scores, classes, 0.5, 100).tolist() == [0, 1]
    assert batched_nms(boxes, scores, classes, 0.5, 100, class_agnostic=True).tolist() == [0]


def test_batched_nms_per_class_equals_nms_run_class_by_class() -> None:
    rng = np.random.default_rng(7)
    boxes, scores = random_boxes(rng, 300)
    boxes -= 20  # some coordinates negative, as raw model outputs can be
    classes = rng.integers(0, 5, len(boxes))
    kept = set(batched_nms(boxes, scores, classes, 0.45, 1000).tolist())
    expected = set()
    for class_id in range(5):
        members = np.flatnonzero(classes == class_id)
        expected |= set(members[nms(boxes[members], scores[members], 0.45, 1000)].tolist())
    assert kept == expected


def test_empty_and_degenerate_boxes() -> None:
    empty = np.zeros((0, 4), dtype=np.float32)
    assert batched_nms(empty, np.zeros(0, np.float32), np.zeros(0, int), 0.5, 10).size == 0
    flat = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], dtype=np.float32)  # zero area: never overlaps
    assert nms(flat, np.array([0.9, 0.8], np.float32), 0.5, 10).tolist() == [0, 1]


def test_probiou_of_a_box_with_itself_is_one_and_far_boxes_zero() -> None:
    from visionserve.tasks.nms import probiou

    boxes = np.array([[50, 50, 40, 20, 0.3], [50, 50, 40, 20, 0.3 + np.pi], [500, 500, 40, 20, 0.0]])
    ious = probiou(boxes)
    assert ious[0, 0] == pytest.approx(1.0, abs=1e-3) and ious[0, 1] == pytest.approx(1.0, abs=1e-3)
    assert ious[0, 2] == pytest.approx(0.0, abs=1e-3)
    rotated_square = np.array([[0, 0, 30, 30, 0.0], [0, 0, 30, 30, np.pi / 2]])
    assert probiou(rotated_square)[0, 1] == pytest.approx(1.0, abs=1e-3)  # a square turned 90° is itself


def test_rotated_nms_removes_the_same_rectangle_at_another_angle_and_keeps_other_classes() -> None:
    from visionserve.tasks.nms import rotated_nms

    boxes = np.array(
        [[100, 100, 60, 20, 0.0], [100, 100, 20, 60, np.pi / 2], [101, 99, 58, 21, 0.05], [300, 300, 60, 20, 1.0]]
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert rotated_nms(boxes, scores, classes, 0.7, 100).tolist() == [0, 2, 3]
    assert rotated_nms(boxes, scores, classes, 0.7, 100, class_agnostic=True).tolist() == [0, 3]
    assert rotated_nms(boxes, scores, classes, 0.7, 2).tolist() == [0, 2]
