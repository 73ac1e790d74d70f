import numpy as np
import pytest

from visionserve.tasks.yolo_outputs import OutputLayout, decode_candidates, detect_layout


@pytest.mark.parametrize(
    ("shape", "classes", "extra", "end_to_end", "layout"),
    [
        ((1, 22, 2100), 18, 0, False, OutputLayout.ANCHORS_LAST),  # nudenet, YOLOv8
        ((1, 84, 8400), 80, 0, False, OutputLayout.ANCHORS_LAST),
        ((1, 116, 8400), 80, 32, False, OutputLayout.ANCHORS_LAST),  # YOLOv8-seg
        ((1, 25200, 85), 80, 0, False, OutputLayout.OBJECTNESS),  # classic YOLOv5
        ((1, 300, 6), 80, 0, False, OutputLayout.END_TO_END),
        ((1, 300, 6), 1, 0, True, OutputLayout.END_TO_END),  # 1 class: the metadata settles it
        ((1, 6300, 6), 1, 0, False, OutputLayout.OBJECTNESS),
        ((1, 5, 2100), 1, 0, False, OutputLayout.ANCHORS_LAST),
    ],
)
def test_layouts_are_told_apart_by_shape(shape, classes, extra, end_to_end, layout) -> None:
    assert detect_layout(shape, classes, extra, end_to_end) is layout


def test_unknown_layout_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="matches no known YOLO layout for 3 classes"):
        detect_layout((1, 10, 100), 3)
    with pytest.raises(ValueError, match="3-D"):
        detect_layout((1, 10), 3)


def anchors_last(rows: list[list[float]]) -> np.ndarray:
    """[cx, cy, w, h, scores...] per anchor → the [4+C, N] output of one image."""
    return np.array(rows, dtype=np.float32).T


def test_anchors_last_takes_the_best_class_and_filters_by_confidence() -> None:
    output = anchors_last([[50, 50, 20, 10, 0.1, 0.9], [10, 10, 4, 4, 0.3, 0.2], [80, 80, 8, 8, 0.5, 0.4]])
    found = decode_candidates(output, OutputLayout.ANCHORS_LAST, 2, confidence=0.4, max_candidates=100)
    order = np.argsort(-found.scores)
    assert found.scores[order].tolist() == pytest.approx([0.9, 0.5])
    assert found.class_ids[order].tolist() == [1, 0]
    assert found.boxes[order][0].tolist() == [40, 45, 60, 55]
    assert not found.suppressed


def test_max_candidates_keeps_the_highest_scores() -> None:
    scores = np.linspace(0.5, 0.99, 50)
    output = anchors_last([[10, 10, 2, 2, score] for score in scores])
    found = decode_candidates(output, OutputLayout.ANCHORS_LAST, 1, confidence=0.1, max_candidates=5)
    assert sorted(found.scores.tolist()) == pytest.approx(sorted(scores[-5:].tolist()))


def test_objectness_layout_scores_are_objectness_times_class_probability() -> None:
    output = np.array([[50, 50, 20, 10, 0.8, 0.25, 0.75], [5, 5, 2, 2, 0.3, 0.9, 0.1]], dtype=np.float32)
    found = decode_candidates(output, OutputLayout.OBJECTNESS, 2, confidence=0.5, max_candidates=100)
    assert found.scores.tolist() == pytest.approx([0.6])
    assert found.class_ids.tolist() == [1]


def test_end_to_end_rows_are_already_suppressed_and_padding_is_dropped() -> None:
    output = np.zeros((300, 6), dtype=np.float32)
    output[0] = [10, 20, 30, 40, 0.9, 2]
    output[1] = [15, 25, 35, 45, 0.3, 1]
    found = decode_candidates(output, OutputLayout.END_TO_END, 3, confidence=0.0, max_candidates=100)
    assert found.suppressed and len(found.scores) == 2
    assert found.boxes[0].tolist() == [10, 20, 30, 40] and found.class_ids.tolist() == [2, 1]
