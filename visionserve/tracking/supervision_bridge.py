"""Our `Detections` to and from `supervision.Detections`, the type Roboflow's `trackers` and supervision's zones
work on. Each row carries its index, so what the library answers maps back to our rows (and their masks, keypoints
and extra fields) exactly."""

from __future__ import annotations

import numpy as np
import supervision as sv

from visionserve.workflows.values import Detections

ROW = "visionserve_row"


def to_supervision(detections: Detections) -> sv.Detections:
    return sv.Detections(
        xyxy=detections.xyxy.astype(np.float32).reshape(-1, 4),
        confidence=detections.confidence.astype(np.float32),
        class_id=detections.class_id.astype(int),
        tracker_id=None if detections.tracker_id is None else detections.tracker_id.astype(int),
        data={ROW: np.arange(len(detections))},
    )


def rows(answer: sv.Detections) -> np.ndarray:
    """Our row index of each detection the library answered."""
    if len(answer) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(answer.data[ROW], dtype=int)
