"""RF-DETR keypoint models (rfdetr's GroupPose head, e.g. RFDETRKeypointPreview): boxes and named keypoints.

Their exports add `keypoints` [B, Q, S, 8] to `dets` and `labels`: per query, S = class slots × the largest
keypoint count, padded per class slot (rfdetr's `num_keypoints_per_class`, e.g. [17]; a leading 0 is the
legacy background-first layout). The 8 channels of a point (rfdetr/models/heads/keypoints.py): x, y in 0..1 of
the input, a "findable" logit, a "visible" logit, three precision-Cholesky parameters (log l11, l21, log l22)
and a class-logit share.

As rfdetr's own `PostProcess` and `predict()` do: the top query × class pairs by sigmoid score (as many as there
are queries, rfdetr's num_select), then for classes with keypoints the score is fused with the points'
localisation uncertainty, sigmoid(log(score) - 0.2 · log mean trace), the threshold applies to that fused score,
and the order stays the one of the unfused scores. A point's confidence is the sigmoid of its findable logit.
"""

from __future__ import annotations

import numpy as np

from visionserve.models.manifest import Task
from visionserve.tasks.base import Options, ResponseFields
from visionserve.tasks.detection import normalized_cxcywh_to_input_xyxy
from visionserve.tasks.keypoints import KeypointParams, parse_keypoint_options, with_keypoints
from visionserve.tasks.preprocess import ImageTransform
from visionserve.tasks.rfdetr import BOXES, LOGITS, RFDETRDetectionPredictor, class_slots, output_index, sigmoid

KEYPOINTS = "keypoints"
TRACE_ALPHA = 0.2  # rfdetr's postprocess_trace_alpha default
X, Y, FINDABLE, CHOLESKY = 0, 1, 2, slice(4, 7)


def keypoint_class_slots(logit_count: int, names: list[str], counts: list[int]) -> tuple[np.ndarray, list[str]]:
    """Logit slot → answered class index (-1: never answered), as rfdetr's predict() names them; every slot
    with keypoints must get a name, or its detections would silently never be answered."""
    active = [slot for slot, count in enumerate(counts) if count > 0]
    if counts[0] == 0 or (len(names) == len(counts) and logit_count > len(names) + 1):
        named = active if counts[0] == 0 else list(range(len(counts)))  # background-first: slot 0 has no class
        slots = np.full(logit_count, -1, dtype=np.intp)
        slots[named[: len(names)]] = np.arange(min(len(names), len(named)))
        answered = names[: len(named)]
    else:
        slots, answered = class_slots(logit_count, names)
    unnamed = [slot for slot in active if slots[slot] < 0]
    if unnamed:
        raise ValueError(
            f"the model's keypoint class slots {unnamed} have no class name among the {len(names)} given; pass "
            f"--classes with one name per keypoint class (here {len(active)}), or all {logit_count - 1} classes"
        )
    return slots, answered


def log_mean_trace(points: np.ndarray) -> np.ndarray:
    """[n, k, 8] → [n]: log of the findability-weighted mean trace of each point's covariance (rfdetr's
    `_keypoint_log_mean_trace`), kept in log space."""
    log_l11, l21, log_l22 = (points[..., CHOLESKY.start + i] for i in range(3))
    log_t1, log_t2 = -2.0 * log_l11, -2.0 * log_l22
    log_t3 = 2.0 * np.log(np.maximum(np.abs(l21), 1e-12)) + log_t1 + log_t2
    log_trace = np.logaddexp(np.logaddexp(log_t1, log_t2), log_t3)
    log_weight = np.log(np.maximum(sigmoid(points[..., FINDABLE]), 1e-12))
    return np.logaddexp.reduce(log_trace + log_weight, axis=-1) - np.logaddexp.reduce(log_weight, axis=-1)


def fused_scores(scores: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Scores of detections with keypoints, fused with their uncertainty and kept below 1."""
    fused = sigmoid(np.log(scores) - TRACE_ALPHA * log_mean_trace(points)).astype(np.float32)
    return np.minimum(fused, np.nextafter(np.float32(1), np.float32(0)))


class RFDETRKeypointsPredictor(RFDETRDetectionPredictor):
    task = Task.KEYPOINT_DETECTION

    def configure(self, warmup: list[np.ndarray]) -> None:
        names = self.runner.output_names
        self.boxes_at, self.logits_at = output_index(names, BOXES), output_index(names, LOGITS)
        self.keypoints_at = output_index(names, KEYPOINTS)
        boxes, logits, points = (warmup[at].shape for at in (self.boxes_at, self.logits_at, self.keypoints_at))
        if len(points) != 4 or points[1] != boxes[1] or logits[1] != boxes[1] or points[3] < 3:
            raise ValueError(f"expected {KEYPOINTS} [B, Q, S, 8] beside {BOXES} and {LOGITS}, got {list(points)}")
        counts = self.manifest.keypoint_counts or [points[2]]  # without a schema: one class owns every slot
        if len(counts) * max(counts) != points[2] or len(counts) > logits[2]:
            raise ValueError(f"the keypoint schema {counts} does not fit the model's {points[2]} keypoint slots")
        self.counts = counts
        self.slots, self.answered_names = keypoint_class_slots(logits[2], self.manifest.class_names, counts)

    def parse_options(self, options: Options) -> KeypointParams:
        return parse_keypoint_options(options)

    def keypoint_names(self, class_id: int) -> list[str]:
        names = self.manifest.keypoint_names.get(class_id)
        slot = int(np.flatnonzero(self.slots == class_id)[0])
        count = self.counts[slot] if slot < len(self.counts) else 0
        return names[:count] if names is not None else [str(index) for index in range(count)]

    def postprocess(
        self, outputs: list[np.ndarray], transform: ImageTransform, params: KeypointParams
    ) -> ResponseFields:
        logits = outputs[self.logits_at]
        scores = sigmoid(logits).ravel()
        top = np.argsort(-scores, kind="stable")[: min(params.detection.max_detections, logits.shape[0])]
        queries, slots = np.divmod(top, logits.shape[1])
        answered = self.slots[slots] >= 0  # rfdetr ranks every slot; unnamed ones are never answered
        top, queries, slots = top[answered], queries[answered], slots[answered]
        raw = outputs[self.keypoints_at][queries].reshape(len(queries), len(self.counts), max(self.counts), -1)
        confidences = scores[top]
        points = np.zeros((len(queries), max(self.counts), 3), dtype=np.float32)
        height, width = self.input_hw
        for slot, count in enumerate(self.counts):
            rows = np.flatnonzero(slots == slot)
            if count == 0 or rows.size == 0:
                continue
            active = raw[rows, slot, :count]
            if active.shape[-1] >= CHOLESKY.stop:
                confidences[rows] = fused_scores(confidences[rows], active)
            points[rows, :count] = np.stack(
                [active[..., X] * width, active[..., Y] * height, sigmoid(active[..., FINDABLE])], axis=-1
            )
        keep = np.flatnonzero(confidences > params.detection.confidence)
        boxes = normalized_cxcywh_to_input_xyxy(outputs[self.boxes_at][queries[keep]], self.input_hw)
        detections = self.detections(boxes, confidences[keep], self.slots[slots[keep]],
                                     points[keep].reshape(len(keep), -1), transform, params.detection)
        kept = detections.extras.reshape(len(detections), -1, 3)
        positions = transform.points_to_original(kept[..., :2], clip=False)  # rfdetr leaves points unclipped
        return {"predictions": with_keypoints(self.box_predictions(detections), detections.class_ids, positions,
                                              kept[..., 2], self.keypoint_names, params.keypoint_confidence)}
