"""Image → network input tensor, resized once and written straight into the batch tensor.

Each image's `ImageTransform` records exactly how it was placed, so outputs map back without rounding drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from visionserve.images.decode import DecodedImage
from visionserve.models.manifest import ResizeMode

_INV_255 = np.float32(1.0 / 255.0)


@dataclass(frozen=True)
class ImageTransform:
    """Image region → network input: `input = (original - offset) * scale + pad`, per axis.

    The region is the whole image, or the model's static crop of it, whose top-left corner is the offset."""

    original_width: int  # of the region fed to the model
    original_height: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    offset_x: int = 0
    offset_y: int = 0
    image_width: int = 0  # the whole decoded image, static crop or not
    image_height: int = 0

    def input_to_original_axes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Per axis, (a, c) such that original = input * a + c."""
        return (
            (1 / self.scale_x, self.offset_x - self.pad_x / self.scale_x),
            (1 / self.scale_y, self.offset_y - self.pad_y / self.scale_y),
        )

    def points_to_original(self, points: np.ndarray, clip: bool = True) -> np.ndarray:
        """Map [..., (x, y)] pairs from input pixels to original pixels, clipped to the region unless told not."""
        x = (points[..., 0] - self.pad_x) / self.scale_x
        y = (points[..., 1] - self.pad_y) / self.scale_y
        if clip:
            x, y = np.clip(x, 0, self.original_width), np.clip(y, 0, self.original_height)
        return np.stack([x + self.offset_x, y + self.offset_y], axis=-1).astype(np.float32)

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map xyxy boxes from input pixels to original pixels, clipped to the region."""
        return self.points_to_original(boxes.reshape(-1, 2, 2)).reshape(-1, 4)


def _resized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    if (pixels.shape[1], pixels.shape[0]) == (width, height):
        return pixels
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)


def _write_chw_rgb(image_bgr: np.ndarray, out: np.ndarray) -> None:
    """HWC BGR uint8 → CHW RGB floats in [0, 1], into `out` (a view of the batch tensor)."""
    np.multiply(image_bgr.transpose(2, 0, 1)[::-1], _INV_255, out=out, casting="unsafe")


def letterbox_into(image: DecodedImage, out: np.ndarray, pad_value: int) -> ImageTransform:
    """Fit the image inside `out` ([3, H, W]) keeping its aspect ratio, centred on a grey border."""
    target_h, target_w = out.shape[1:]
    width, height = image.width, image.height
    ratio = min(target_h / height, target_w / width)
    new_w = max(1, min(target_w, round(width * ratio)))
    new_h = max(1, min(target_h, round(height * ratio)))
    left, top = (target_w - new_w) // 2, (target_h - new_h) // 2
    if (new_w, new_h) != (target_w, target_h):
        out[...] = pad_value / 255.0
    _write_chw_rgb(_resized(image.pixels, new_w, new_h), out[:, top : top + new_h, left : left + new_w])
    return ImageTransform(width, height, new_w / width, new_h / height, float(left), float(top))


def stretch_into(image: DecodedImage, out: np.ndarray, pad_value: int = 0) -> ImageTransform:
    """Resize the image to fill `out` exactly, ignoring its aspect ratio."""
    target_h, target_w = out.shape[1:]
    width, height = image.width, image.height
    _write_chw_rgb(_resized(image.pixels, target_w, target_h), out)
    return ImageTransform(width, height, target_w / width, target_h / height, 0.0, 0.0)


def center_crop_into(image: DecodedImage, out: np.ndarray, pad_value: int = 0) -> ImageTransform:
    """Scale the short side to fit, then keep the centre (Ultralytics' classification transform)."""
    target_h, target_w = out.shape[1:]
    width, height = image.width, image.height
    ratio = max(target_h / height, target_w / width)
    new_w, new_h = max(target_w, round(width * ratio)), max(target_h, round(height * ratio))
    left, top = (new_w - target_w) // 2, (new_h - target_h) // 2
    _write_chw_rgb(_resized(image.pixels, new_w, new_h)[top : top + target_h, left : left + target_w], out)
    return ImageTransform(width, height, new_w / width, new_h / height, float(-left), float(-top))


_PLACE = {ResizeMode.LETTERBOX: letterbox_into, ResizeMode.CENTER_CROP: center_crop_into, ResizeMode.STRETCH: stretch_into}


def build_input_batch(
    images: list[DecodedImage],
    input_hw: tuple[int, int],
    mode: ResizeMode,
    pad_value: int,
    batch_size: int | None = None,
) -> tuple[np.ndarray, list[ImageTransform]]:
    """Stack images into one float32 [B, 3, H, W] tensor, each resized once, straight into its slot.

    `batch_size` pads the batch with zeros for models with a fixed batch axis.
    """
    rows = max(len(images), batch_size or 0)
    tensor = np.zeros((rows, 3, *input_hw), dtype=np.float32)
    place = _PLACE[mode]
    return tensor, [place(image, tensor[index], pad_value) for index, image in enumerate(images)]
