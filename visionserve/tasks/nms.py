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
    # Shift each class into its own region, so one pass never lets two classes suppress each other.
    offset = 2.0 * float(np.abs(boxes).max()) + 1.0
    shifted = boxes + (class_ids.astype(boxes.dtype) * offset)[:, None]
    return nms(shifted, scores, iou_threshold, max_keep)
