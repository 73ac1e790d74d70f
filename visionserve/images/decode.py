"""Encoded bytes → one BGR uint8 array, with EXIF orientation applied and a pixel budget enforced
before any pixel is decoded (a small file can claim a huge image)."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

from visionserve.errors import InputImageError

Image.MAX_IMAGE_PIXELS = None  # our own limit applies; Pillow's would warn or raise on its own terms


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image header alone, or None if Pillow does not know the format."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Exception:  # Pillow raises many types for unknown or broken headers; cv2 gets the final word
        return None


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputImageError(
            f"Image is {width}x{height} pixels, more than the limit of {max_pixels} pixels "
            "(VISIONSERVE_MAX_IMAGE_PIXELS)."
        )


def decode_image(data: bytes, max_pixels: int, auto_orient: bool = True) -> np.ndarray:
    """Decode any format OpenCV reads; grayscale becomes 3 channels and alpha is dropped."""
    if not data:
        raise InputImageError("Empty image payload.")
    size = header_size(data)
    if size is not None:
        check_pixel_count(*size, max_pixels)
    flags = cv2.IMREAD_COLOR if auto_orient else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error:
        image = None
    if image is None:
        raise InputImageError("Data is not an image: the bytes are in no image format this server decodes.")
    check_pixel_count(image.shape[1], image.shape[0], max_pixels)
    return image
