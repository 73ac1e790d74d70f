"""Semantic segmentation: a class for every pixel of the original image, answered as the reference does (base64
PNGs of the class map and of the confidence 0-255, the class names by index, the class ids present).

Two output layouts are read:
- per-class logits [B, C, h, w] (torchvision segmenters, Roboflow's DeepLabV3+): the letterbox border is cut
  away, the logits are resampled bilinearly (PyTorch's `align_corners=False`) to the original size, then softmax:
  the class is the argmax and the confidence its probability. Pixels under the request's confidence get
  confidence 0 and the class named `background` or, when none is, 255: the reference's -1 in its uint8 PNG.
- a class map [B, H, W] with the argmax inside the graph (Ultralytics YOLO26 semantic exports): the border is cut
  away and the map resized by nearest neighbour, as Ultralytics' predictor does. Such a file keeps no scores, so
  every pixel's confidence is 255 and the confidence option changes nothing.

The logits are resampled one class at a time into a running softmax, so memory stays bounded on large images; the
work (classes x answer pixels) is charged to the request's mask budget before it is done.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import cv2
import numpy as np

from visionserve.errors import ModelPackageError
from visionserve.models.manifest import ResizeMode, Task
from visionserve.tasks.base import Options, Predictor, ResponseFields
from visionserve.tasks.masks import charge_mask_pixels
from visionserve.tasks.preprocess import ImageTransform

DEFAULT_CONFIDENCE = 0.4
KEYWORD_CONFIDENCE = 0.5  # "best"/"default": the reference's own default for DeepLabV3+
BACKGROUND_NAME = "background"
NO_CLASS = 255


@dataclass(frozen=True)
class Region:
    """Where the image lies in the model's output: rows top..bottom, columns left..right."""

    top: int
    bottom: int
    left: int
    right: int


# Measured on 640x480 maps: no row filter for the class map (flat runs: half the time and a smaller file than
# OpenCV's default), the "up" filter for the confidence (as fast as the default, 8% smaller).
CLASS_PNG = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
             cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
CONFIDENCE_PNG = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]


def png_base64(pixels: np.ndarray, params: list[int]) -> str:
    ok, data = cv2.imencode(".png", pixels, params)
    if not ok:  # pragma: no cover - OpenCV encodes any 2-D uint8 array
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(data.tobytes()).decode("ascii")


def nearest_indices(source: int, target: int) -> np.ndarray:
    """PyTorch's `interpolate(mode="nearest")` along one axis: floor(target index x source / target), in float32."""
    scale = np.float32(source / target)
    return np.minimum(np.floor(np.arange(target, dtype=np.float32) * scale).astype(np.int64), source - 1)


def classes_and_confidence(logits: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """[C, h, w] logits → (argmax, max softmax probability) at height x width. Each class's plane is resized
    bilinearly (half-pixel centres, as PyTorch's `align_corners=False`) in turn and folded into a running softmax
    (max, and sum of exp relative to it), so memory stays a few planes whatever the class count."""

    def plane(index: int) -> np.ndarray:
        return cv2.resize(logits[index], (width, height), interpolation=cv2.INTER_LINEAR)

    best = plane(0)
    classes = np.zeros((height, width), dtype=np.uint8)
    total = np.ones((height, width), dtype=np.float32)  # sum over classes so far of exp(logit - best)
    for index in range(1, logits.shape[0]):
        values = plane(index)
        # Where this class is higher (ties keep the lower class, as argmax does) it becomes the answer: it is above
        # every class so far, so a maximum writes it without a masked store, which costs ten times as much.
        np.maximum(classes, (values > best).view(np.uint8) * np.uint8(index), out=classes)
        peak = np.maximum(best, values)
        total *= cv2.exp(best - peak)
        total += cv2.exp(values - peak)
        best = peak
    return classes, 1 / total


class SemanticSegmentationPredictor(Predictor):
    task = Task.SEMANTIC_SEGMENTATION

    def configure(self, warmup: list[np.ndarray]) -> None:
        if self.spec.resize is ResizeMode.CENTER_CROP:
            raise ModelPackageError(
                "semantic segmentation answers every pixel, so a centre crop cannot be used; use --resize stretch, "
                "letterbox or short-side"
            )
        shape = warmup[0].shape
        count = len(self.class_names)
        if count > NO_CLASS:
            raise ModelPackageError(f"it names {count} classes; the class map is an 8-bit PNG, so at most {NO_CLASS}")
        self.has_logits = len(shape) == 4
        if not (self.has_logits and shape[1] == count) and shape[1:] != self.input_hw:
            raise ValueError(
                f"expected [B, {count}, h, w] class logits or a [B, {', '.join(map(str, self.input_hw))}] class map "
                f"as the first output, got {list(shape)}"
            )
        lowered = [name.lower() for name in self.class_names]
        self.background = lowered.index(BACKGROUND_NAME) if BACKGROUND_NAME in lowered else NO_CLASS
        self.class_map = {str(index): name for index, name in enumerate(self.class_names)}

    def parse_options(self, options: Options) -> float:
        value = options.get("confidence")
        if isinstance(value, str):
            return KEYWORD_CONFIDENCE
        return DEFAULT_CONFIDENCE if value is None else float(value)

    def input_extent(self, transform: ImageTransform) -> tuple[int, int]:
        """(height, width) of this image's input tensor: the model's, or the image's own when the short side was
        resized."""
        if self.spec.resize is ResizeMode.SHORT_SIDE:
            return (round(transform.original_height * transform.scale_y),
                    round(transform.original_width * transform.scale_x))
        return self.input_hw

    def region(self, transform: ImageTransform, output_hw: tuple[int, int]) -> Region:
        """The image's part of an output of `output_hw`, without the letterbox border (scaled as the reference
        scales the pads to the output's resolution, rounded), at least one output pixel each way."""
        (in_h, in_w), (out_h, out_w) = self.input_extent(transform), output_hw
        bottom = transform.pad_y + transform.original_height * transform.scale_y
        right = transform.pad_x + transform.original_width * transform.scale_x
        top = min(round(transform.pad_y * out_h / in_h), out_h - 1)
        left = min(round(transform.pad_x * out_w / in_w), out_w - 1)
        return Region(top, max(round(bottom * out_h / in_h), top + 1), left, max(round(right * out_w / in_w), left + 1))

    def postprocess(self, outputs: list[np.ndarray], transform: ImageTransform, threshold: float) -> ResponseFields:
        height, width = transform.original_height, transform.original_width
        output = outputs[0]
        if self.has_logits:
            charge_mask_pixels(output.shape[0] * height * width)
            cut = self.region(transform, output.shape[1:])
            classes, confidence = classes_and_confidence(
                output[:, cut.top : cut.bottom, cut.left : cut.right], height, width
            )
            uncertain = (confidence < threshold).view(np.uint8)  # stores through it branch-free: masks cost more
            cv2.copyTo(np.full_like(classes, self.background), uncertain, classes)
            confidence_map = (confidence * 255).astype(np.uint8) * (1 - uncertain)  # truncated, as the reference does
        else:
            charge_mask_pixels(height * width)
            in_h, in_w = self.input_extent(transform)
            if output.shape != (in_h, in_w):  # Ultralytics first brings the map to the input's size
                output = output[nearest_indices(output.shape[0], in_h)][:, nearest_indices(output.shape[1], in_w)]
            cut = self.region(transform, (in_h, in_w))
            kept = output[cut.top : cut.bottom, cut.left : cut.right]
            rows, columns = nearest_indices(kept.shape[0], height), nearest_indices(kept.shape[1], width)
            classes = kept[rows][:, columns].astype(np.uint8)
            confidence_map = np.full((height, width), 255, dtype=np.uint8)
        classes, confidence_map = self.on_whole_image(classes, confidence_map, transform)
        return {
            "predictions": {
                "segmentation_mask": png_base64(classes, CLASS_PNG),
                "class_map": self.class_map,
                "confidence_mask": png_base64(confidence_map, CONFIDENCE_PNG),
                "present_class_ids": np.flatnonzero(cv2.calcHist([classes], [0], None, [256], [0, 256])).tolist(),
            }
        }

    def on_whole_image(
        self, classes: np.ndarray, confidence: np.ndarray, transform: ImageTransform
    ) -> tuple[np.ndarray, np.ndarray]:
        """Maps of a static crop's region placed on the whole image: outside it, background at confidence 0."""
        full_h, full_w = transform.image_height or classes.shape[0], transform.image_width or classes.shape[1]
        if classes.shape == (full_h, full_w):
            return classes, confidence
        whole_classes = np.full((full_h, full_w), self.background, dtype=np.uint8)
        whole_confidence = np.zeros((full_h, full_w), dtype=np.uint8)
        rows = slice(transform.offset_y, transform.offset_y + classes.shape[0])
        columns = slice(transform.offset_x, transform.offset_x + classes.shape[1])
        whole_classes[rows, columns], whole_confidence[rows, columns] = classes, confidence
        return whole_classes, whole_confidence
