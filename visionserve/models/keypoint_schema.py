"""Keypoint names per class from Roboflow's `keypoints_metadata.json` (also what `models add --keypoints` reads).

The format (reference, models.md §4.5): a list of `{"object_class_id": 0, "keypoints": {"0": "nose", ...},
"edges": [{"from": 0, "to": 1}, ...]}`. Edges only matter for drawings and are not needed to answer.
"""

from __future__ import annotations

import json
from pathlib import Path

from visionserve.errors import ModelPackageError
from visionserve.models.manifest import ModelFamily, Task

KEYPOINTS_METADATA_FILE = "keypoints_metadata.json"


def read_keypoint_schema(path: Path) -> dict[int, list[str]]:
    """Class id → its keypoint names in index order; a malformed file is refused, naming what is wrong."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelPackageError(f"{path.name} cannot be read: {error}") from None
    return parse_keypoint_schema(entries, path.name)


def parse_keypoint_schema(entries: object, source: str = KEYPOINTS_METADATA_FILE) -> dict[int, list[str]]:
    """The same from the parsed JSON (a weights API sends it inline as `keypoints_metadata`)."""
    if not isinstance(entries, list) or not entries:
        raise ModelPackageError(f"{source}: expected a list of {{object_class_id, keypoints}} objects")
    schema: dict[int, list[str]] = {}
    for entry in entries:
        class_id = entry.get("object_class_id") if isinstance(entry, dict) else None
        points = entry.get("keypoints") if isinstance(entry, dict) else None
        if not isinstance(class_id, int) or isinstance(class_id, bool) or class_id < 0 or not isinstance(points, dict):
            raise ModelPackageError(f"{source}: every entry needs an integer object_class_id and a keypoints object")
        if set(points) != {str(index) for index in range(len(points))}:  # JSON keys are strings
            raise ModelPackageError(f"{source}: class {class_id}'s keypoints must be keyed 0..{len(points) - 1}")
        schema[class_id] = [str(points[str(index)]) for index in range(len(points))]
    return schema


def keypoint_counts(schema: dict[int, list[str]]) -> list[int]:
    """Keypoints of each class slot 0..max id (rfdetr's num_keypoints_per_class, active-first)."""
    return [len(schema.get(class_id, [])) for class_id in range(max(schema) + 1)]


def rfdetr_keypoint_counts(family: ModelFamily, task: Task, names: dict[int, list[str]] | None) -> list[int] | None:
    """An RF-DETR keypoint model's slots per class, from its keypoint names when given (else the predictor
    takes one class owning every slot)."""
    if family is ModelFamily.RFDETR and task is Task.KEYPOINT_DETECTION and names:
        return keypoint_counts(names)
    return None
