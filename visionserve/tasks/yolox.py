"""YOLOX (Megvii's anchor-free YOLO, exported by its own tools): one output [B, N, 5 + C].

Its conventions differ from Ultralytics' in every step: the image is letterboxed into the top-left corner on grey
114 with sizes truncated, fed as BGR 0..255 (no scaling), and each row holds cx, cy, w, h, objectness and C class
probabilities. Exports made with `decode_in_inference` (the default) hold boxes in input pixels; the others hold
the raw grid offsets, decoded here per stride 8, 16, 32: centre = (offset + cell) × stride, size = exp(v) × stride.
Scores are objectness × class probability, then NMS: the classic YOLOv5 path takes it from there.
"""

from __future__ import annotations

import numpy as np

from visionserve.models.manifest import ResizeMode
from visionserve.tasks.detection import DetectionParams, Detections, ObjectDetectionPredictor
from visionserve.tasks.preprocess import ImageTransform, InputSpec
from visionserve.tasks.yolo_outputs import OutputLayout

STRIDES = (8, 16, 32)


def grid_cells(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Each output row's cell (x, y) and stride, in YOLOX's order: stride by stride, row-major."""
    cells, strides = [], []
    for stride in STRIDES:
        rows, columns = input_hw[0] // stride, input_hw[1] // stride
        y, x = np.mgrid[0:rows, 0:columns]
        cells.append(np.stack([x.ravel(), y.ravel()], axis=1))
        strides.append(np.full(rows * columns, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)[:, None]


def looks_decoded(rows: np.ndarray, cells: np.ndarray, strides: np.ndarray) -> bool:
    """Decoded centres follow the grid (they lie within a few cells of their own); raw offsets are small
    numbers that do not. Told from any output, even of a blank image."""
    centres = (cells + 0.5) * strides
    distance = np.abs(rows[:, :2] - centres) / strides
    return float(np.median(distance)) < 4.0


class YoloxDetectionPredictor(ObjectDetectionPredictor):
    def input_spec(self) -> InputSpec:
        return InputSpec(
            size=self.input_hw,
            resize=ResizeMode.LETTERBOX,
            pad_value=114,
            bgr=True,
            pixel_scale=1.0,
            pad_top_left=True,
            ratio_gain=True,  # YOLOX maps boxes back by its ratio, not by the truncated size
        )

    def configure(self, warmup: list[np.ndarray]) -> None:
        shape = warmup[0].shape
        self.cells, self.strides = grid_cells(self.input_hw)
        if len(shape) != 3 or shape[1] != len(self.cells) or shape[2] != 5 + len(self.class_names):
            raise ValueError(
                f"expected a YOLOX output [B, {len(self.cells)}, {5 + len(self.class_names)}] for input "
                f"{list(self.input_hw)}, got {list(shape)}"
            )
        self.layout = OutputLayout.OBJECTNESS
        self.raw_grid = not looks_decoded(warmup[0][0], self.cells, self.strides)

    def detect(self, output: np.ndarray, transform: ImageTransform, params: DetectionParams) -> Detections:
        if self.raw_grid:
            output = output.copy()
            output[:, :2] = (output[:, :2] + self.cells) * self.strides
            output[:, 2:4] = np.exp(output[:, 2:4]) * self.strides
        return super().detect(output, transform, params)
