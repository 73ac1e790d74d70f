"""What `visionserve workflows run` shows of a workflow's outputs: one readable line per output, and its images
written out as the JPEG files the server sent (never encoded again)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

_JPEG_BASE64 = "/9j/"  # base64 of FF D8 FF, how every JPEG starts: the server sends each output image as one
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_LISTED = 5


def jpeg_bytes(value: object) -> bytes | None:
    """The JPEG file an output string holds (`run_workflow` gives images as base64 text), else None."""
    if not isinstance(value, str) or not value.startswith(_JPEG_BASE64):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def output_images(outputs: list[dict[str, Any]]) -> Iterator[tuple[str, bytes]]:
    """(file name, JPEG bytes) of every image in the outputs, at any depth: `annotated.jpg`, `crops-0.jpg`, and
    for a batch of several elements the element's index first (`1-crops-0.jpg`)."""
    for index, output in enumerate(outputs):
        prefix = [str(index)] if len(outputs) > 1 else []
        for name, value in output.items():
            for parts, data in _images(value, [*prefix, _UNSAFE.sub("_", name)]):
                yield "-".join(parts) + ".jpg", data


def _images(value: Any, parts: list[str]) -> Iterator[tuple[list[str], bytes]]:
    if (data := jpeg_bytes(value)) is not None:
        yield parts, data
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _images(item, [*parts, str(position)])
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _images(item, [*parts, _UNSAFE.sub("_", key)])


def summary(value: Any) -> str:
    """One line saying what an output holds: a class, detections by class, an image's size, a list's items."""
    if (data := jpeg_bytes(value)) is not None:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return "image" if pixels is None else f"image {pixels.shape[1]}x{pixels.shape[0]}"
    if isinstance(value, list):
        if value and all(jpeg_bytes(item) is not None for item in value):
            return f"{len(value)} images"
        listed = "; ".join(summary(item) for item in value[:MAX_LISTED])
        more = f"; {len(value) - MAX_LISTED} more" if len(value) > MAX_LISTED else ""
        return f"{len(value)} items" + (f": {listed}{more}" if value else "")
    if isinstance(value, dict) and "top" in value:
        return f"class {value['top']} ({value.get('confidence', 0):.2f})"
    if isinstance(value, dict) and isinstance(value.get("predictions"), list):
        classes = Counter(str(prediction.get("class")) for prediction in value["predictions"])
        counted = ", ".join(f"{name} {count}" for name, count in sorted(classes.items()))
        return f"{len(value['predictions'])} predictions" + (f" ({counted})" if counted else "")
    if isinstance(value, dict) and "predicted_classes" in value:
        return f"classes {', '.join(value['predicted_classes']) or 'none'}"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 100 else text[:97] + "..."


def write_images(outputs: list[dict[str, Any]], folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, data in output_images(outputs):
        (folder / name).write_bytes(data)
        written += 1
    return written
