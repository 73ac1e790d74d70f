"""Turning what a user has (path, URL, numpy array, PIL image, bytes, base64 text) into base64 for the wire,
optionally downsized, and scaling predictions back to the original size."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from visionserve.images.sources import looks_like_image_file

_DATA_URL_PREFIX = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,")
JPEG_QUALITY = 95


@dataclass(frozen=True)
class EncodedImage:
    base64: str
    scale: float = 1.0  # sent size / original size; 1.0 when the image was not downsized


def flatten(inputs: object) -> list[object]:
    """A single input or (nested) lists of inputs → a flat list, in order."""
    if isinstance(inputs, (list, tuple)):
        return [item for element in inputs for item in flatten(element)]
    return [inputs]


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _strict_base64(text: str) -> bytes | None:
    """The decoded bytes if `text` is base64 of an image file, else None."""
    try:
        data = base64.b64decode(_DATA_URL_PREFIX.sub("", text.strip(), count=1), validate=True)
    except (binascii.Error, ValueError):
        return None
    if looks_like_image_file(data) or cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is not None:
        return data
    return None


def _array_to_jpeg(array: np.ndarray) -> bytes:
    if array.dtype != np.uint8:
        raise ValueError(f"numpy images must be uint8 (as OpenCV gives them), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    ok, jpeg = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode a numpy array shaped {array.shape} as an image")
    return jpeg.tobytes()


def _pil_to_array(image: Any) -> np.ndarray:
    """Any PIL mode (RGBA, P, L, I;16...) → BGR, instead of failing to save as JPEG."""
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)


def image_bytes_or_array(item: object, http: httpx.Client) -> bytes | np.ndarray:
    """The image as encoded file bytes, or as a BGR array when that is what the user has."""
    if isinstance(item, np.ndarray):
        return item
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, Path):
        return item.read_bytes()
    if isinstance(item, str):
        if _is_url(item):
            response = http.get(item, follow_redirects=True)
            response.raise_for_status()
            return response.content
        if len(item) < 4096 and Path(item).is_file():
            return Path(item).read_bytes()
        data = _strict_base64(item)
        if data is None:
            raise ValueError(
                f"{item[:60]!r} is neither an existing file, an http(s) URL, nor base64 of an image"
            )
        return data
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image, without importing Pillow here
        return _pil_to_array(item)
    raise ValueError(f"cannot send {type(item).__name__} as an image")


def encode(item: object, http: httpx.Client, max_size: tuple[int, int] | None) -> EncodedImage:
    """Base64 of the image, downsized to fit `max_size` (height, width) when given."""
    source = image_bytes_or_array(item, http)
    if max_size is None:
        data = source if isinstance(source, bytes) else _array_to_jpeg(source)
        return EncodedImage(base64.b64encode(data).decode("ascii"))
    array = source if isinstance(source, np.ndarray) else cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_COLOR)
    if array is None:
        raise ValueError("the image cannot be decoded, so it cannot be downsized")
    height, width = array.shape[:2]
    scale = min(max_size[0] / height, max_size[1] / width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    else:
        scale = 1.0
    return EncodedImage(base64.b64encode(_array_to_jpeg(array)).decode("ascii"), scale)


def _scale_points(points: Iterable[dict[str, Any]], factor: float) -> None:
    for point in points:
        point["x"] /= factor
        point["y"] /= factor


def rescale(result: dict[str, Any], scale: float) -> dict[str, Any]:
    """Undo client-side downsizing on one response: image size, boxes, polygons, keypoints."""
    predictions = result.get("predictions")
    if scale == 1.0 or result.get("is_stub") or not isinstance(predictions, list):
        return result
    if isinstance(result.get("image"), dict):
        result["image"] = {key: round(value / scale) for key, value in result["image"].items()}
    for prediction in predictions:
        for key in ("x", "y", "width", "height"):
            if key in prediction:
                prediction[key] /= scale
        _scale_points(prediction.get("points") or [], scale)
        _scale_points(prediction.get("keypoints") or [], scale)
    return result
