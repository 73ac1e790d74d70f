"""A model's own pre-processing steps (Roboflow packages): static crop, contrast, grayscale, in that order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from visionserve.images.decode import DecodedImage
from visionserve.models.manifest import Contrast, Preprocessing

# skimage-style adaptive equalisation with clip limit 0.03, in OpenCV's units (a multiple of the mean bin height).
_CLAHE_CLIP = 0.03 * 256
_CLAHE_TILES = (8, 8)


def _stretch_contrast(image: np.ndarray) -> np.ndarray:
    low, high = np.percentile(image, (2, 98))
    if high <= low:
        return image
    scaled = (image.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _equalize(image: np.ndarray, adaptive: bool) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if adaptive:
        gray = cv2.createCLAHE(clipLimit=_CLAHE_CLIP, tileGridSize=_CLAHE_TILES).apply(gray)
    else:
        gray = cv2.equalizeHist(gray)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def adjust(image: DecodedImage, steps: Preprocessing, options: Mapping[str, Any]) -> tuple[DecodedImage, int, int]:
    """The image the model sees, and the offset (x, y) of its top-left corner in the original. A static crop
    needs the full pixels (the caller does not draft-decode then)."""
    offset_x = offset_y = 0
    pixels = image.pixels
    crop = steps.static_crop
    if crop is not None and not options.get("disable_preproc_static_crop"):
        height, width = pixels.shape[:2]
        offset_x, offset_y = int(crop.x_min / 100 * width), int(crop.y_min / 100 * height)
        right, bottom = int(crop.x_max / 100 * width), int(crop.y_max / 100 * height)
        if right > offset_x and bottom > offset_y:
            image = DecodedImage.full(pixels[offset_y:bottom, offset_x:right])
        else:
            offset_x = offset_y = 0
    pixels = image.pixels
    if steps.contrast is not None and not options.get("disable_preproc_contrast"):
        if steps.contrast is Contrast.STRETCHING:
            pixels = _stretch_contrast(pixels)
        else:
            pixels = _equalize(pixels, adaptive=steps.contrast is Contrast.ADAPTIVE)
    if steps.grayscale and not options.get("disable_preproc_grayscale"):
        pixels = cv2.cvtColor(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return DecodedImage(pixels, image.width, image.height), offset_x, offset_y
