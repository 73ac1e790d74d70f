"""Detections consensus through the official inference-sdk against a real server: two detection steps vote, and
the kept boxes are checked against what /infer gives each step's model and confidence directly."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.test_workflows import DETECT, boxes, detector, http, infer, run_sdk, workflow  # noqa: F401 (http)

CONSENSUS = "roboflow_core/detections_consensus@v1"
CORE_KEYS = ("x", "y", "width", "height", "confidence", "class", "class_id")


def consensus_spec(low: float, high: float, **options: object) -> dict:
    step = {"type": CONSENSUS, "name": "vote", "predictions_batches": ["$steps.a.predictions", "$steps.b.predictions"],
            "required_votes": 2, **options}  # fmt: skip
    return workflow([detector("a", confidence=low), detector("b", confidence=high), step],
                    {"kept": "$steps.vote.predictions", "present": "$steps.vote.object_present",
                     "presence": "$steps.vote.presence_confidence"})  # fmt: skip


def core(predictions: list[dict]) -> list[tuple]:
    return sorted(tuple(p[key] for key in CORE_KEYS) for p in predictions)


def direct(http: httpx.Client, path: Path, confidence: float) -> list[dict]:
    return infer(http, "object_detection", "shapes-detect/1", path.read_bytes(), confidence=confidence)["predictions"]


def test_two_steps_on_the_same_model_agree_on_their_boxes(
    fixture_server: Server, http: httpx.Client, tmp_path: Path
) -> None:
    outputs = run_sdk(fixture_server, consensus_spec(0.4, 0.4), DETECT, tmp_path, "--detections", "kept")["outputs"]
    for output, path in zip(outputs, DETECT):
        expected = direct(http, path, 0.4)
        assert core(output["kept"]["predictions"]) == core(expected) and expected
        assert output["present"] is True
        best = {p["class"]: max(q["confidence"] for q in expected if q["class"] == p["class"]) for p in expected}
        assert output["presence"] == pytest.approx(best)  # presence: max per class


def test_required_votes_keeps_what_both_found(fixture_server: Server, http: httpx.Client, tmp_path: Path) -> None:
    """Step a keeps boxes of confidence >= 0.3, step b >= 0.9: b's boxes are those both found."""
    path = DETECT[0]
    low, high = direct(http, path, 0.3), direct(http, path, 0.9)
    assert len(low) > len(high) > 0
    for votes, expected in ((1, low), (2, high), (3, [])):
        (output,) = run_sdk(fixture_server, consensus_spec(0.3, 0.9, required_votes=votes), [path],
                            tmp_path)["outputs"]  # fmt: skip
        assert core(output["kept"]["predictions"]) == core(expected)
        assert output["present"] is bool(expected)
    # confidence of the merged boxes, classes to consider, required objects and the class-blind presence
    (output,) = run_sdk(fixture_server, consensus_spec(0.3, 0.3, required_votes=2, confidence=0.9,
                        classes_to_consider=[high[0]["class"]], class_aware=False,
                        required_objects={"anything": 99}), [path], tmp_path)["outputs"]  # fmt: skip
    kept = [p for p in high if p["class"] == high[0]["class"]]
    assert core(output["kept"]["predictions"]) == core(kept)
    assert output["present"] is False and output["presence"] == {}  # 99 objects asked for
    (output,) = run_sdk(fixture_server, consensus_spec(0.3, 0.3, class_aware=False, required_objects=1), [path],
                        tmp_path)["outputs"]  # fmt: skip
    assert output["present"] is True
    assert output["presence"] == {"any_object": pytest.approx(max(p["confidence"] for p in low))}


def test_a_second_model_votes_with_averaged_boxes(fixture_server: Server, http: httpx.Client, tmp_path: Path) -> None:
    """Two different models: every kept box is the mean of one box of each, of the same class, overlapping."""
    path = DETECT[1]
    spec = consensus_spec(0.4, 0.4)
    spec["steps"][1]["model_id"] = "shapes-detect-yolo11/1"
    (output,) = run_sdk(fixture_server, spec, [path], tmp_path)["outputs"]
    first = direct(http, path, 0.4)
    second = infer(http, "object_detection", "shapes-detect-yolo11/1", path.read_bytes(), confidence=0.4)["predictions"]
    kept = boxes(output["kept"]["predictions"])
    assert kept and len(kept) <= min(len(first), len(second))
    for box in kept:
        pairs = [(a, b) for a in first for b in second if a["class"] == b["class"] == box["class"]
                 and all(box[key] == pytest.approx((a[key] + b[key]) / 2) for key in ("x", "y", "confidence"))]
        assert len(pairs) == 1
