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


def probiou(boxes: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Pairwise probabilistic IoU of rotated boxes [n, 5]: one minus the Hellinger distance between the boxes
    seen as Gaussians (ProbIoU, the overlap Ultralytics' OBB NMS uses)."""
    x, y = boxes[:, 0], boxes[:, 1]
    a, b, c = _covariances(boxes)
    a_sum, b_sum, c_sum = a[:, None] + a[None], b[:, None] + b[None], c[:, None] + c[None]
    dx, dy = x[:, None] - x[None], y[:, None] - y[None]
    denominator = a_sum * b_sum - c_sum**2 + eps
    t1 = (a_sum * dy**2 + b_sum * dx**2) / denominator * 0.25
    t2 = (c_sum * -dx * dy) / denominator * 0.5
    determinants = np.clip(a * b - c**2, 0, None)
    t3 = 0.5 * np.log((a_sum * b_sum - c_sum**2) / (4 * np.sqrt(determinants[:, None] * determinants[None]) + eps) + eps)
    distance = np.clip(t1 + t2 + t3, eps, 100.0)
    return 1.0 - np.sqrt(1.0 - np.exp(-distance) + eps)


def rotated_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    max_keep: int,
    class_agnostic: bool = False,
) -> np.ndarray:
    """Indices of kept rotated boxes [n, 5] (cx, cy, w, h, angle), best first. As Ultralytics does, a box goes if
    any better box overlaps it by the threshold or more (fast NMS), whether that box was kept or not."""
    if not len(boxes) or max_keep <= 0:
        return np.empty(0, dtype=np.intp)
    order = np.argsort(-scores, kind="stable")
    ordered = boxes[order].astype(np.float64)
    if not class_agnostic:
        ordered[:, :2] += _class_shifts(class_ids[order], ordered[:, :4])[:, None]
    overlaps = np.triu(probiou(ordered), k=1)
    survivors = order[overlaps.max(axis=0, initial=0.0) < iou_threshold]
    return survivors[:max_keep]
