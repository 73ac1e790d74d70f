"""Image declarations (`{"type": ..., "value": ...}`) → encoded image bytes."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from visionserve.errors import InputImageError

_DATA_URL_PREFIX = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,")


@dataclass(frozen=True)
class ImageSpec:
    type: str  # lower case: base64, url, ...
    value: Any


def decode_base64(value: object) -> bytes:
    """Standard base64 with an optional `data:image/...;base64,` prefix; stray characters are skipped,
    as the reference does, but a truncated payload is an error."""
    if isinstance(value, str):
        value = _DATA_URL_PREFIX.sub("", value, count=1)
    elif not isinstance(value, bytes):
        raise InputImageError("Malformed base64 input image: the value must be a string.")
    try:
        data = base64.b64decode(value)
    except (binascii.Error, ValueError):
        raise InputImageError("Malformed base64 input image.") from None
    if not data:
        raise InputImageError("Empty image payload.")
    return data
