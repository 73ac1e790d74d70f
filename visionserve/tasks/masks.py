"""Instance masks from YOLO prototypes, decoded box by box.

A mask is `sigmoid(coefficients · prototypes)` at prototype resolution (a quarter of the input), then resampled to
whatever resolution the answer needs. Only the part under the detection's box is ever computed or resampled, with
one affine warp from prototype pixels straight to target pixels, so the cost follows the size of the objects, not
of the image. The mask pixels one request may make are bounded (`MaskBudget`): a caller choosing confidence 0 and
many detections on a huge image would otherwise choose the server's CPU time.
"""

from __future__ import annotations

import math
import threading
from contextvars import ContextVar
from dataclasses import dataclass

import cv2
import numpy as np

from visionserve.errors import InvalidRequestError


class MaskBudget:
    """Mask pixels (each mask counts its box, in answer pixels) a request may still make."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()  # a batch's chunks decode masks side by side

    def charge(self, pixels: int) -> None:
        with self._lock:
            self.used += pixels
            if self.used > self.limit:
                raise InvalidRequestError(
                    f"The masks of this request would cover more than {self.limit} pixels "
                    "(VISIONSERVE_MAX_MASK_PIXELS): raise the confidence, lower max_detections, or send a smaller "
                    "image."
                )


mask_budget: ContextVar[MaskBudget | None] = ContextVar("visionserve_mask_budget", default=None)


def charge_mask_pixels(pixels: int) -> None:
    """Count mask pixels against the running request's budget before they are computed (no budget: no limit)."""
    budget = mask_budget.get()
    if budget is not None:
        budget.charge(pixels)


@dataclass(frozen=True)
class Axis:
    """Target coordinate = input coordinate * scale + shift, along one axis."""

    scale: float
    shift: float = 0.0

    def to_target(self, value: float) -> float:
        return value * self.scale + self.shift

    def to_input(self, value: np.ndarray) -> np.ndarray:
        return (value - self.shift) / self.scale


@dataclass(frozen=True)
class MaskPatch:
    """The binary mask under one box, and where its top-left pixel sits in target pixels."""

    mask: np.ndarray  # [h, w] bool
    left: int
    top: int


def decode_mask(
    protos: np.ndarray,
    coefficients: np.ndarray,
    box: np.ndarray,
    input_hw: tuple[int, int],
    x_axis: Axis,
    y_axis: Axis,
    target_wh: tuple[int, int],
) -> MaskPatch:
    """The mask of one detection (box xyxy in input pixels), sampled on the target grid and cut to the box."""
    channels, proto_h, proto_w = protos.shape
    gain_x, gain_y = proto_w / input_hw[1], proto_h / input_hw[0]
    x1, x2 = x_axis.to_target(float(box[0])), x_axis.to_target(float(box[2]))
    y1, y2 = y_axis.to_target(float(box[1])), y_axis.to_target(float(box[3]))
    left, right = max(0, math.floor(x1)), min(target_wh[0], math.ceil(x2))
    top, bottom = max(0, math.floor(y1)), min(target_wh[1], math.ceil(y2))
    if right <= left or bottom <= top:
        return MaskPatch(np.zeros((0, 0), dtype=bool), left, top)
    charge_mask_pixels((right - left) * (bottom - top))
    # Prototype pixels under the box, one pixel wider on each side so the warp never samples past the edge.
    px0 = max(0, math.floor(box[0] * gain_x) - 1)
    px1 = min(proto_w, math.ceil(box[2] * gain_x) + 1)
    py0 = max(0, math.floor(box[1] * gain_y) - 1)
    py1 = min(proto_h, math.ceil(box[3] * gain_y) + 1)
    if px1 <= px0 or py1 <= py0:
        return MaskPatch(np.zeros((bottom - top, right - left), dtype=bool), left, top)
    logits = coefficients.astype(np.float32) @ protos[:, py0:py1, px0:px1].reshape(channels, -1)
    probabilities = (1.0 / (1.0 + np.exp(-logits))).reshape(py1 - py0, px1 - px0).astype(np.float32)
    # Target pixel centre (left + j + 0.5) → input (÷ scale) → prototype pixel centre coordinates.
    step_x, step_y = gain_x / x_axis.scale, gain_y / y_axis.scale
    warp = np.array(
        [
            [step_x, 0.0, (left + 0.5 - x_axis.shift) * step_x - 0.5 - px0],
            [0.0, step_y, (top + 0.5 - y_axis.shift) * step_y - 0.5 - py0],
        ],
        dtype=np.float64,
    )
    sampled = cv2.warpAffine(
        probabilities,
        warp,
        (right - left, bottom - top),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mask = sampled > 0.5
    columns, rows = np.arange(left, right), np.arange(top, bottom)
    mask[:, (columns < x1) | (columns >= x2)] = False
    mask[(rows < y1) | (rows >= y2), :] = False
    return MaskPatch(mask, left, top)


def largest_polygon(patch: MaskPatch) -> np.ndarray:
    """The outer contour with the most points ([n, 2] x, y in target pixels), as the reference picks it;
    empty for an empty mask."""
    if not patch.mask.any():
        return np.zeros((0, 2), dtype=np.float32)
    contours, _ = cv2.findContours(patch.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=len).reshape(-1, 2).astype(np.float32)
    contour[:, 0] += patch.left
    contour[:, 1] += patch.top
    return contour

