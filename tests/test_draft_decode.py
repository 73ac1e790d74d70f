"""Large JPEGs are decoded at a fraction of their size when the model looks at less, with the same answer."""

from __future__ import annotations

import io

import cv2
import httpx
import numpy as np
from PIL import Image

from tests.conftest import b64, encode, image_value, photo
from visionserve.images.decode import DecodeLimits, decode_image

NEEDS_A_QUARTER = lambda w, h: 0.25
NO_LIMITS = DecodeLimits(max_pixels=10**9, max_jpeg_scans=100)


def big_jpeg(width: int = 1920, height: int = 1080, orientation: int | None = None) -> bytes:
    rgb = cv2.resize(cv2.cvtColor(photo("astronaut"), cv2.COLOR_BGR2RGB), (width, height), interpolation=cv2.INTER_CUBIC)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(rgb).save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


def test_draft_decoding_keeps_the_true_size() -> None:
    image = decode_image(big_jpeg(), NO_LIMITS, needed=NEEDS_A_QUARTER)
    assert (image.width, image.height) == (1920, 1080) and image.pixels.shape == (270, 480, 3)
    turned = decode_image(big_jpeg(orientation=6), NO_LIMITS, needed=NEEDS_A_QUARTER)
    assert (turned.width, turned.height) == (1080, 1920) and turned.pixels.shape == (480, 270, 3)
    kept = decode_image(big_jpeg(orientation=6), NO_LIMITS, auto_orient=False, needed=NEEDS_A_QUARTER)
    assert (kept.width, kept.height) == (1920, 1080)
    small = decode_image(encode(photo("chelsea")), NO_LIMITS, needed=NEEDS_A_QUARTER)  # a small photo: decoded whole
    assert small.pixels.shape == (300, 451, 3)
    needs_all = decode_image(big_jpeg(), NO_LIMITS, needed=lambda w, h: 0.9)
    assert needs_all.pixels.shape == (1080, 1920, 3)


def test_a_large_photo_gives_the_same_detections(client: httpx.Client) -> None:
    jpeg = big_jpeg()
    full = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    drafted = client.post("/infer/object_detection",
                          json={"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(jpeg)}}).json()
    exact = client.post("/infer/object_detection", json={"model_id": "nudenet/1", "image": image_value(full, ".png")}).json()
    assert drafted["image"] == exact["image"] == {"width": 1920, "height": 1080}
    assert [p["class"] for p in drafted["predictions"]] == [p["class"] for p in exact["predictions"]]
    for mine, theirs in zip(drafted["predictions"], exact["predictions"]):
        assert abs(mine["confidence"] - theirs["confidence"]) < 0.05
        assert all(abs(mine[key] - theirs[key]) <= 12 for key in ("x", "y", "width", "height"))  # 1080p pixels
    rotated = client.post("/infer/object_detection",
                          json={"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(big_jpeg(orientation=6))}})
    assert rotated.json()["image"] == {"width": 1080, "height": 1920}
