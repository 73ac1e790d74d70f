"""Step values → JSON, as the reference serialises workflow outputs (A5): detections as detection JSON, images
as `{"type": "base64", "value": <JPEG>}` (the SDK decodes any dict of that type), numpy values as lists."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import cv2
import numpy as np

from visionserve.workflows.values import Detections, WorkflowImage

JPEG_QUALITY = 95


def image_json(image: WorkflowImage) -> dict[str, Any]:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image.pixels), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # an empty crop (a box outside the image): no pixels to encode
        data = np.zeros(0, dtype=np.uint8)
    serialised: dict[str, Any] = {
        "type": "base64",
        "value": base64.b64encode(data.tobytes()).decode("ascii"),
        "video_metadata": serialised_value(image.video_metadata),
    }
    if not image.is_root:
        serialised.update(
            parent_id=image.parent.image_id, parent_origin=image.parent.as_json(),
            root_parent_id=image.root.image_id, root_parent_origin=image.root.as_json(),
        )  # fmt: skip
    return serialised


def serialised_value(value: Any, root_coordinates: bool = True) -> Any:
    """`value` as plain JSON types; detections in the root image's coordinates unless `root_coordinates` is off."""
    if isinstance(value, Detections):
        return value.as_json(root_coordinates)
    if isinstance(value, WorkflowImage):
        return image_json(value)
    if isinstance(value, dict):
        return {str(key): serialised_value(item, root_coordinates) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [serialised_value(item, root_coordinates) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value
