"""The raw output layouts of YOLO-family ONNX exports, and how to turn one image's rows into candidates.

- anchors last, `[B, 4+C+E, N]`: YOLOv8, YOLO11, YOLOv5u (cx, cy, w, h, C class scores, E extras per anchor)
- objectness, `[B, N, 5+C+E]`: classic YOLOv5 (cx, cy, w, h, objectness, C class probabilities, E extras)
- end to end, `[B, K, 6+E]`: NMS or a one-to-one head inside the graph (x1, y1, x2, y2, score, class, E extras),
  zero-padded rows

E is 0 for detection, 32 mask coefficients for segmentation, K·D keypoint values for pose.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class OutputLayout(str, Enum):
    ANCHORS_LAST = "anchors-last"
    OBJECTNESS = "objectness"
    END_TO_END = "end-to-end"


def detect_layout(
    shape: tuple[int, ...], num_classes: int, num_extra: int = 0, end_to_end: bool = False
) -> OutputLayout:
    """Tell the layout from the output shape; `end_to_end` (from metadata) settles the one ambiguous case."""
    if len(shape) != 3:
        raise ValueError(f"expected a 3-D detection output, got shape {list(shape)}")
    _, rows, columns = shape
    if end_to_end and columns == 6 + num_extra:
        return OutputLayout.END_TO_END
    if rows == 4 + num_classes + num_extra:
        return OutputLayout.ANCHORS_LAST
    if columns == 5 + num_classes + num_extra:
        return OutputLayout.OBJECTNESS
    if columns == 6 + num_extra:
        return OutputLayout.END_TO_END
    raise ValueError(
        f"output shape {list(shape)} matches no known YOLO layout for {num_classes} classes "
        f"and {num_extra} extra values per box (expected [B, {4 + num_classes + num_extra}, N], "
        f"[B, N, {5 + num_classes + num_extra}] or [B, K, {6 + num_extra}])"
    )


@dataclass(frozen=True)
class ScoredRows:
    """Output rows scoring at least the threshold, columns as the layout has them, with score and class."""

    rows: np.ndarray  # [n, columns]
    scores: np.ndarray  # [n]
    class_ids: np.ndarray  # [n] int


@dataclass(frozen=True)
class Candidates:
    """Boxes above the confidence threshold, in network-input pixels, not yet suppressed."""

    boxes: np.ndarray  # [n, 4] xyxy
    scores: np.ndarray  # [n]
    class_ids: np.ndarray  # [n] int
    extras: np.ndarray  # [n, E]
    suppressed: bool  # True when the graph already ran NMS


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    half = xywh[:, 2:4] / 2
    return np.concatenate([xywh[:, 0:2] - half, xywh[:, 0:2] + half], axis=1)


def _top_k(indices: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    if indices.size <= k:
        return indices
    return indices[np.argpartition(-scores[indices], k - 1)[:k]]


def score_rows(
    output: np.ndarray, layout: OutputLayout, num_classes: int, confidence: float, max_candidates: int
) -> ScoredRows:
    """One image's raw output (batch axis removed) → its best `max_candidates` rows scoring at least
    `confidence`, as [n, columns]."""
    if layout is OutputLayout.ANCHORS_LAST:
        class_scores = output[4 : 4 + num_classes]
        best = class_scores.max(axis=0)
        keep = _top_k(np.flatnonzero(best >= confidence), best, max_candidates)
        return ScoredRows(output[:, keep].T, best[keep], class_scores[:, keep].argmax(axis=0))
    if layout is OutputLayout.OBJECTNESS:
        rows = output[output[:, 4] >= confidence]  # objectness bounds the final score from above
        class_probs = rows[:, 5 : 5 + num_classes]
        class_ids = class_probs.argmax(axis=1)
        scores = rows[:, 4] * class_probs[np.arange(len(rows)), class_ids]
        keep = _top_k(np.flatnonzero(scores >= confidence), scores, max_candidates)
        return ScoredRows(rows[keep], scores[keep], class_ids[keep])
    scores = output[:, 4]
    keep = _top_k(np.flatnonzero((scores >= confidence) & (scores > 0)), scores, max_candidates)
    return ScoredRows(output[keep], scores[keep], output[keep, 5].astype(np.intp))


def decode_candidates(
    output: np.ndarray,
    layout: OutputLayout,
    num_classes: int,
    confidence: float,
    max_candidates: int,
) -> Candidates:
    """One image's raw output → axis-aligned candidate boxes (xyxy) and their extra values."""
    scored = score_rows(output, layout, num_classes, confidence, max_candidates)
    rows = scored.rows
    if layout is OutputLayout.ANCHORS_LAST:
        return Candidates(xywh_to_xyxy(rows[:, :4]), scored.scores, scored.class_ids, rows[:, 4 + num_classes :], False)
    if layout is OutputLayout.OBJECTNESS:
        return Candidates(xywh_to_xyxy(rows[:, :4]), scored.scores, scored.class_ids, rows[:, 5 + num_classes :], False)
    return Candidates(rows[:, :4], scored.scores, scored.class_ids, rows[:, 6:], True)
