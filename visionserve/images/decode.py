"""Encoded bytes → one BGR uint8 image, with EXIF orientation applied and a pixel budget enforced before any
pixel is decoded (a small file can claim a huge image).

A JPEG much larger than the model's input is decoded at 1/2, 1/4 or 1/8 of its size straight from its DCT data
(libjpeg's draft mode: a 1920x1080 photo in 2.7 ms instead of 9.4 ms here), never below what the model needs.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from visionserve.errors import InputImageError

Image.MAX_IMAGE_PIXELS = None  # our own limit applies; Pillow's would warn or raise on its own terms

# (width, height) of an image → the fraction of that size the model needs to see (1.0: full size).
NeededScale = Callable[[int, int], float]
_DRAFTS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
DRAFT_MIN_PIXELS = 250_000  # below this, draft decoding saves too little to be worth differing from a full decode


@dataclass(frozen=True)
class DecodedImage:
    """Pixels (BGR uint8) of an image of `width` x `height`; draft decoding may make the pixels smaller."""

    pixels: np.ndarray
    width: int
    height: int

    @classmethod
    def full(cls, pixels: np.ndarray) -> DecodedImage:
        return cls(pixels, pixels.shape[1], pixels.shape[0])


_TURNING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    turned: bool  # its EXIF orientation turns it by 90°
    format: str | None  # Pillow's name for it: JPEG, PNG, ...


def read_header(data: bytes) -> Header | None:
    """Size and EXIF orientation from the image header alone, or None if Pillow does not know the format."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                orientation = image.getexif().get(0x0112) if image.format == "JPEG" else None
                return Header(image.size[0], image.size[1], orientation in _TURNING_ORIENTATIONS, image.format)
    except Exception:  # Pillow raises many types for unknown or broken headers
        return None


def check_pixel_count(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputImageError(
            f"Image is {width}x{height} pixels, more than the limit of {max_pixels} pixels "
            "(VISIONSERVE_MAX_IMAGE_PIXELS)."
        )


def _draft(header: Header | None, needed: NeededScale | None, is_jpeg: bool) -> tuple[int, int]:
    """(reduction factor, OpenCV flag): the strongest reduction that still leaves the model all it needs,
    in either orientation."""
    if header is None or needed is None or not is_jpeg or header.width * header.height < DRAFT_MIN_PIXELS:
        return 1, cv2.IMREAD_COLOR
    fraction = max(needed(header.width, header.height), needed(header.height, header.width))
    return next(((factor, flag) for factor, flag in _DRAFTS if fraction * factor <= 1), (1, cv2.IMREAD_COLOR))


def _undecodable(data: bytes, header: Header | None) -> str:
    """Why bytes did not decode: a known format whose data stops short or is damaged, or no image at all."""
    known = header.format if header is not None else None
    if known is None and data.startswith(b"\xff\xd8\xff"):  # cut before Pillow could read the JPEG's size
        known = "JPEG"
    if known is not None:
        return f"the data is a truncated or corrupt {known} file: it starts as one, but its pixels cannot be read."
    return "Data is not an image: the bytes are in no image format this server decodes."


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int  # width x height of one image
    max_jpeg_scans: int  # a progressive JPEG's cost grows with its scans, not only its pixels


def count_jpeg_scans(data: bytes) -> int:
    """Start-of-scan markers. Entropy-coded data never holds FF DA (an FF there is followed by 00), so this counts
    every scan, plus any in embedded thumbnails: an overcount of a few, never an undercount."""
    return data.count(b"\xff\xda")


def decode_image(
    data: bytes,
    limits: DecodeLimits,
    auto_orient: bool = True,
    needed: NeededScale | None = None,
    charge: Callable[[int, int], None] | None = None,
) -> DecodedImage:
    """Decode the formats whose size can be read before decoding (Pillow reads the header; OpenCV decodes), within
    `limits`; `charge(width, height)` books the pixels first. Grayscale becomes 3 channels and alpha is dropped."""
    if not data:
        raise InputImageError("Empty image payload.")
    header = read_header(data)
    if header is None:  # a format whose size nobody checked (Radiance .hdr, ...) could decode to gigabytes
        raise InputImageError(_undecodable(data, None))
    check_pixel_count(header.width, header.height, limits.max_pixels)
    if header.format == "JPEG" and count_jpeg_scans(data) > limits.max_jpeg_scans:
        raise InputImageError(
            f"The JPEG has more than {limits.max_jpeg_scans} scans (VISIONSERVE_MAX_JPEG_SCANS); decoding it would "
            "take far longer than its size suggests."
        )
    factor, flags = _draft(header, needed, data.startswith(b"\xff\xd8\xff"))
    if charge is not None:
        charge(-(-header.width // factor), -(-header.height // factor))
    if not auto_orient:
        flags |= cv2.IMREAD_IGNORE_ORIENTATION
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error:
        pixels = None
    if pixels is None:
        raise InputImageError(_undecodable(data, header))
    if factor == 1:
        check_pixel_count(pixels.shape[1], pixels.shape[0], limits.max_pixels)
        return DecodedImage.full(pixels)
    if auto_orient and header.turned:
        return DecodedImage(pixels, header.height, header.width)
    return DecodedImage(pixels, header.width, header.height)
