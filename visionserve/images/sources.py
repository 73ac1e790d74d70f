"""Image declarations (`{"type": ..., "value": ...}`) and the payload formats they carry."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any

import pybase64

from visionserve.errors import InputImageError

ENCODED = "encoded"  # internal: bytes of an image file (multipart upload, raw body); not reachable from JSON
DECODED = "decoded"  # internal: BGR uint8 pixels in memory (workflow crops, video frames); not reachable from JSON

_DATA_URL_PREFIX = re.compile(rb"^\s*data:image/[A-Za-z0-9.+-]+;base64,")
_IMAGE_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little endian
    b"MM\x00*",  # TIFF, big endian
)


@dataclass(frozen=True)
class ImageSpec:
    type: str  # lower case: base64, url, numpy, ENCODED or DECODED
    value: Any


def looks_like_image_file(data: bytes) -> bool:
    """True for the formats whose files start with a signature no base64 text can (JPEG, PNG, WebP...)."""
    return data.startswith(_IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def decode_base64(value: object) -> bytes:
    """Standard base64 with an optional `data:image/...;base64,` prefix; stray characters (line breaks) are
    skipped, as the reference does, but a truncated payload is an error."""
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            raise InputImageError("Malformed base64 input image: the text is not ASCII.") from None
    elif not isinstance(value, bytes):
        raise InputImageError("Malformed base64 input image: the value must be a string.")
    if not value or value.isspace():  # no stripped copy of a large payload
        raise InputImageError("Empty image payload.")
    payload = _DATA_URL_PREFIX.sub(b"", value, count=1)
    try:  # strict first: SIMD-fast for clean input (the usual case), then tolerant of line breaks and junk
        data = pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        try:
            data = pybase64.b64decode(payload)
        except (binascii.Error, ValueError):
            raise InputImageError("Malformed base64 input image.") from None
    if not data:  # only characters outside the base64 alphabet
        raise InputImageError("Malformed base64 input image.")
    return data
