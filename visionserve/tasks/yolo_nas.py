"""YOLO-NAS (Deci's super-gradients exports, and Roboflow's `yolo_nas_*` models): three output layouts.

- raw, `model.export(..., postprocessing=False)` and what Roboflow serves: boxes [B, N, 4] already xyxy in input
  pixels and class scores [B, N, C] (sigmoid). As the reference does: each box's best class score is its
  confidence, then NMS per class.
- NMS in the graph, flat format: one [K, 7] output, rows (image index, x1, y1, x2, y2, score, class).
- NMS in the graph, batch format: counts [B, 1], boxes [B, K, 4], scores [B, K], classes [B, K].
The graph's NMS may keep a box once per class; its rows are only filtered by the request's confidence and ranked.
Pixels are RGB scaled to 0..1, letterboxed as the package (or the family's default) says; boxes map back by the
letterbox ratio, as super-gradients' own predict() and the reference do.
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum

import numpy as np

from visionserve.tasks.base import ResponseFields
from visionserve.tasks.detection import DetectionParams, Detections, ObjectDetectionPredictor
from visionserve.tasks.nms import batched_nms
from visionserve.tasks.preprocess import ImageTransform, InputSpec

FLAT_COLUMNS = 7


class NasLayout(str, Enum):
    RAW = "raw"
    FLAT = "flat"
    BATCH = "batch"


def nas_layout(names: list[str], shapes: list[tuple[int, ...]]) -> NasLayout | None:
    """The layout of a super-gradients export from its output names and shapes, or None when it is not one. The
    in-graph NMS formats carry super-gradients' output names; the raw one has only its shapes."""
    ranks = [len(shape) for shape in shapes]
    if ranks == [2] and names[0].endswith("flat_predictions") and shapes[0][1] == FLAT_COLUMNS:
        return NasLayout.FLAT
    if ranks == [2, 3, 2, 2] and names[0].endswith("num_predictions") and shapes[1][2] == 4:
        return NasLayout.BATCH
    if ranks == [3, 3] and shapes[0][2] == 4 and shapes[0][:2] == shapes[1][:2]:
        return NasLayout.RAW
    return None


class YoloNasDetectionPredictor(ObjectDetectionPredictor):
    def input_spec(self) -> InputSpec:
        return replace(super().input_spec(), ratio_gain=True)

    def configure(self, warmup: list[np.ndarray]) -> None:
        shapes = [output.shape for output in warmup]
        layout = nas_layout(self.runner.output_names, shapes)
        if layout is None:
            raise ValueError(
                f"outputs {[list(shape) for shape in shapes]} are none of YOLO-NAS's: boxes [B, N, 4] and scores "
                f"[B, N, {len(self.class_names)}], or super-gradients' flat or batch NMS outputs"
            )
        if layout is NasLayout.RAW and shapes[1][2] != len(self.class_names):
            raise ValueError(f"the model scores {shapes[1][2]} classes, the package names {len(self.class_names)}")
        if layout is NasLayout.RAW and not 0 <= float(warmup[1].min()) <= float(warmup[1].max()) <= 1:
            raise ValueError("its class scores are not probabilities (0..1), as YOLO-NAS's are: logits of another "
                             "family's boxes and classes (a renamed RF-DETR export?); pass --family")
        self.nas_layout = layout

    @property
    def batchable(self) -> bool:
        """Flat rows name their image by its index in the pass: passes of several requests must not merge."""
        return super().batchable and self.nas_layout is not NasLayout.FLAT

    def per_image(self, outputs: list[np.ndarray], count: int) -> list[list[np.ndarray]]:
        """The flat format has no batch axis: its rows name their image in the first column."""
        if self.nas_layout is not NasLayout.FLAT:
            return super().per_image(outputs, count)
        rows = outputs[0]
        return [[rows[rows[:, 0] == index, 1:]] for index in range(count)]

    def postprocess(
        self, outputs: list[np.ndarray], transform: ImageTransform, params: DetectionParams
    ) -> ResponseFields:
        if self.nas_layout is NasLayout.RAW:
            detections = self.suppressed(outputs[0], outputs[1], transform, params)
        elif self.nas_layout is NasLayout.FLAT:
            rows = outputs[0]
            detections = self.ranked(rows[:, :4], rows[:, 4], rows[:, 5], transform, params)
        else:
            count = int(outputs[0].reshape(-1)[0])
            detections = self.ranked(outputs[1][:count], outputs[2][:count], outputs[3][:count], transform, params)
        return {"predictions": self.box_predictions(detections)}

    def suppressed(
        self, boxes: np.ndarray, class_scores: np.ndarray, transform: ImageTransform, params: DetectionParams
    ) -> Detections:
        scores = class_scores.max(axis=1)
        keep = np.flatnonzero(scores >= params.confidence)
        keep = keep[np.argsort(-scores[keep], kind="stable")][: params.max_candidates]
        class_ids = class_scores[keep].argmax(axis=1)
        order = batched_nms(boxes[keep], scores[keep], class_ids, params.iou_threshold, params.max_detections,
                            params.class_agnostic_nms)
        kept, empty = keep[order], np.zeros((len(order), 0), dtype=np.float32)
        return self.detections(boxes[kept], scores[kept], class_ids[order], empty, transform, params)

    def ranked(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        classes: np.ndarray,
        transform: ImageTransform,
        params: DetectionParams,
    ) -> Detections:
        """Rows the graph's NMS kept: above the request's confidence, best first."""
        class_ids = classes.astype(np.intp)
        keep = np.flatnonzero((scores >= params.confidence) & (class_ids >= 0) & (class_ids < len(self.class_names)))
        keep = keep[np.argsort(-scores[keep], kind="stable")][: params.max_detections]
        empty = np.zeros((len(keep), 0), dtype=np.float32)
        return self.detections(boxes[keep], scores[keep], class_ids[keep], empty, transform, params)
