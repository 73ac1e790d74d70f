"""Greedy non-maximum suppression with true IoU, vectorised over the remaining boxes."""

from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray:
    """Indices of kept boxes (xyxy), best first. A box is dropped when its IoU with a kept one exceeds
    `iou_threshold`, the rule torchvision and Ultralytics use."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        if not rest.size:
            break
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = inter_w * inter_h
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def _class_shifts(class_ids: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Per box, a shift that moves each class into a region of its own, so one NMS pass never lets two classes
    suppress each other."""
    offset = 2.0 * float(np.abs(coordinates).max()) + 1.0
    return class_ids.astype(coordinates.dtype) * offset


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_keep: int,
    class_agnostic: bool = False,
) -> np.ndarray:
    """NMS within each class (or across all classes when `class_agnostic`)."""
    if not len(boxes) or max_keep <= 0:
        return np.empty(0, dtype=np.intp)
    if class_agnostic:
        return nms(boxes, scores, iou_threshold, max_keep)
    return nms(boxes + _class_shifts(class_ids, boxes)[:, None], scores, iou_threshold, max_keep)


def _covariances(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each rotated box (cx, cy, w, h, angle) as a Gaussian: its covariance terms a, b, c."""
    a, b = boxes[:, 2] ** 2 / 12, boxes[:, 3] ** 2 / 12
    cos, sin = np.cos(boxes[:, 4]), np.sin(boxes[:, 4])
    return a * cos**2 + b * sin**2, a * sin**2 + b * cos**2, (a - b) * cos * sin


def probiou(boxes: np.ndarray, others: np.ndarray | None = None, eps: float = 1e-7) -> np.ndarray:
    """Probabilistic IoU of rotated boxes [n, 5] with `others` [m, 5] (default: the same boxes), [n, m]: one minus
    the Hellinger distance between the boxes seen as Gaussians (ProbIoU, the overlap Ultralytics' OBB NMS uses)."""
    others = boxes if others is None else others
    a1, b1, c1 = (term[:, None] for term in _covariances(boxes))
    a2, b2, c2 = (term[None] for term in _covariances(others))
    a_sum, b_sum, c_sum = a1 + a2, b1 + b2, c1 + c2
    dx, dy = boxes[:, 0, None] - others[None, :, 0], boxes[:, 1, None] - others[None, :, 1]
    denominator = a_sum * b_sum - c_sum**2 + eps
    t1 = (a_sum * dy**2 + b_sum * dx**2) / denominator * 0.25
    t2 = (c_sum * -dx * dy) / denominator * 0.5
    determinants = np.sqrt(np.clip(a1 * b1 - c1**2, 0, None) * np.clip(a2 * b2 - c2**2, 0, None))
    t3 = 0.5 * np.log((a_sum * b_sum - c_sum**2) / (4 * determinants + eps) + eps)
    distance = np.clip(t1 + t2 + t3, eps, 100.0)
    return 1.0 - np.sqrt(1.0 - np.exp(-distance) + eps)


ROTATED_NMS_ROWS = 256  # better boxes compared at once: memory is this many rows of N, never N x N


def rotated_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_keep: int,
    class_agnostic: bool = False,
) -> np.ndarray:
    """Indices of kept rotated boxes [n, 5] (cx, cy, w, h, angle), best first. As Ultralytics does, a box goes if
    any better box overlaps it by the threshold or more (fast NMS), whether that box was kept or not. The better
    boxes are taken a block at a time, so memory grows with N, not N²."""
    if not len(boxes) or max_keep <= 0:
        return np.empty(0, dtype=np.intp)
    order = np.argsort(-scores, kind="stable")
    ordered = boxes[order].astype(np.float64)
    if not class_agnostic:
        ordered[:, :2] += _class_shifts(class_ids[order], ordered[:, :4])[:, None]
    worst_overlap = np.zeros(len(ordered))  # per box, its largest overlap with any better box
    for start in range(0, len(ordered) - 1, ROTATED_NMS_ROWS):
        stop = min(start + ROTATED_NMS_ROWS, len(ordered))
        overlaps = np.triu(probiou(ordered[start:stop], ordered[start:]), k=1)  # row i: better box start + i
        np.maximum(worst_overlap[start:], overlaps.max(axis=0), out=worst_overlap[start:])
    survivors = order[worst_overlap < iou_threshold]
    return survivors[:max_keep]
