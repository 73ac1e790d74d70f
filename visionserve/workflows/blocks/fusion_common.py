"""What the fusion blocks (detections stitch, detections consensus) share: joining detections made on several
images or by several models into one value, box overlaps, and non-max merge (NMS itself is `tasks/nms.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from visionserve.workflows.values import Detections, WorkflowImage


def iou_matrix(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in `boxes` [n, 4] with every one in `others` [m, 4]: [n, m] (0 where both are empty)."""
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    other_areas = np.prod(np.clip(others[:, 2:] - others[:, :2], 0, None), axis=1)
    union = areas[:, None] + other_areas[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _common(parts: Sequence[list | np.ndarray | None], count: int) -> list | None:
    """A per-detection field joined over parts, or None unless every part with detections has it."""
    present = [part for part in parts if part is not None]
    if len(present) < len(parts):
        return None
    return [item for part in present for item in part] if count else None


def concatenated(parts: Sequence[Detections], image: WorkflowImage) -> Detections:
    """All detections of `parts` (already in `image`'s coordinates) as detections on `image`, in order. Masks,
    keypoints, track ids and extra fields are kept when every part with detections has them."""
    parts = [part for part in parts if len(part)]
    count = sum(len(part) for part in parts)
    tracker = _common([part.tracker_id for part in parts], count)
    extra_keys = set.intersection(*(set(part.extra) for part in parts)) if parts else set()
    return Detections(
        xyxy=np.concatenate([part.xyxy for part in parts]).reshape(count, 4) if parts else np.zeros((0, 4)),
        confidence=np.concatenate([part.confidence for part in parts]) if parts else np.zeros(0),
        class_id=np.concatenate([part.class_id for part in parts]) if parts else np.zeros(0, dtype=np.int64),
        class_name=np.concatenate([part.class_name for part in parts]) if parts else np.empty(0, dtype=object),
        detection_id=np.concatenate([part.detection_id for part in parts]) if parts else np.empty(0, dtype=object),
        image=image,
        image_size=(image.width, image.height),
        polygons=_common([part.polygons for part in parts], count),
        keypoints=_common([part.keypoints for part in parts], count),
        tracker_id=None if tracker is None else np.asarray(tracker, dtype=np.int64),
        extra={key: [value for part in parts for value in part.extra[key]] for key in sorted(extra_keys)},
    )


def non_max_merge(detections: Detections, iou_threshold: float) -> Detections:
    """Non-max merge within each class: the most confident box left takes every box of its class left that overlaps
    it by `iou_threshold` or more; the group becomes one detection (the union box, the confidence averaged by box
    area, the class and other fields of the most confident)."""
    order = np.argsort(-detections.confidence, kind="stable")
    overlaps = iou_matrix(detections.xyxy, detections.xyxy)
    same_class = detections.class_id[:, None] == detections.class_id[None, :]
    areas = np.prod(np.clip(detections.xyxy[:, 2:] - detections.xyxy[:, :2], 0, None), axis=1)
    xyxy, confidence = detections.xyxy.copy(), detections.confidence.copy()
    left = np.ones(len(detections), dtype=bool)
    kept: list[int] = []
    for best in order:
        if not left[best]:
            continue
        group = left & same_class[best] & (overlaps[best] >= iou_threshold)
        group[best] = True
        left &= ~group
        kept.append(int(best))
        xyxy[best] = [*detections.xyxy[group, :2].min(axis=0), *detections.xyxy[group, 2:].max(axis=0)]
        if areas[group].sum() > 0:
            confidence[best] = float(areas[group] @ detections.confidence[group] / areas[group].sum())
    merged = replace(detections, xyxy=xyxy, confidence=confidence)
    return merged.selected(np.sort(np.asarray(kept, dtype=np.intp)))
