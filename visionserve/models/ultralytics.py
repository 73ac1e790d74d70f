"""Reading the metadata Ultralytics writes into ONNX exports.

Every value is `str(python_value)`: `names` is a dict literal with single quotes, `imgsz` a list, booleans are
`True`/`False`. They are parsed with `ast.literal_eval`, which evaluates literals only and never runs code.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass

from visionserve.models.manifest import Task


@dataclass(frozen=True)
class UltralyticsMetadata:
    task: Task | None = None
    class_names: list[str] | None = None
    input_size: tuple[int, int] | None = None  # (height, width)
    stride: int | None = None
    end_to_end: bool = False  # NMS (or a one-to-one head) is inside the graph
    keypoint_shape: tuple[int, int] | None = None  # (keypoints, values per keypoint)
    keypoint_names: dict[int, list[str]] | None = None
    task_name: str | None = None  # as written, also when it is a task this server does not serve
    head: str | None = None  # the head module's class name, e.g. Detect, Segment26, RTDETRDecoder
    nms_first_image_only: bool = False  # dynamic batch with NMS exported at batch 1: later images come back empty

    @property
    def is_ultralytics(self) -> bool:
        return self.task_name is not None


def literal(text: str | None) -> object:
    """Parse a Python literal; anything that is not a plain literal gives None."""
    if text is None or len(text) > 1_000_000:
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def parse_class_names(value: object) -> list[str] | None:
    """`{0: 'person', 1: 'car'}` or `['person', 'car']` → names in index order."""
    if isinstance(value, list) and value:
        return [str(name) for name in value]
    if isinstance(value, dict) and value and all(isinstance(key, int) for key in value):
        if sorted(value) != list(range(len(value))):
            return None
        return [str(value[index]) for index in range(len(value))]
    return None


def parse_input_size(value: object) -> tuple[int, int] | None:
    """`[h, w]`, `(h, w)` or a single side `640`."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) in (1, 2):
        sides = [side for side in value if isinstance(side, int) and not isinstance(side, bool) and side > 0]
        if len(sides) == len(value):
            return (sides[0], sides[-1])
    return None


def parse_keypoint_shape(value: object) -> tuple[int, int] | None:
    """`[17, 3]`: keypoints per object, values per keypoint (2 or 3)."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        count, values = value
        if count > 0 and values in (2, 3):
            return count, values
    return None


def parse_keypoint_names(value: object) -> dict[int, list[str]] | None:
    """`{0: ['nose', 'left_eye', ...]}`, keyed by class id (as int or str)."""
    if not isinstance(value, dict):
        return None
    names: dict[int, list[str]] = {}
    for key, labels in value.items():
        if not str(key).isdigit() or not isinstance(labels, (list, tuple)):
            return None
        names[int(key)] = [str(label) for label in labels]
    return names or None


def parse_metadata(props: Mapping[str, str]) -> UltralyticsMetadata:
    task_name = props.get("task")
    try:
        task = Task.parse(task_name) if task_name else None
    except ValueError:
        task = None
    stride = literal(props.get("stride"))
    args = literal(props.get("args"))
    args = args if isinstance(args, dict) else {}
    nms_in_graph = args.get("nms") is True
    head = props.get("head")
    return UltralyticsMetadata(
        task=task,
        class_names=parse_class_names(literal(props.get("names"))),
        input_size=parse_input_size(literal(props.get("imgsz"))),
        stride=stride if isinstance(stride, int) and not isinstance(stride, bool) and stride > 0 else None,
        end_to_end=nms_in_graph or literal(props.get("end2end")) is True,
        keypoint_shape=parse_keypoint_shape(literal(props.get("kpt_shape"))),
        keypoint_names=parse_keypoint_names(literal(props.get("kpt_names"))),
        task_name=task_name.strip() if task_name else None,
        head=head.strip() if isinstance(head, str) and head.strip() else None,
        # Ultralytics warns at export: its in-graph NMS keeps rows for the first image only unless exported with
        # batch > 1 (checked with onnxruntime on such an export).
        nms_first_image_only=nms_in_graph and args.get("dynamic") is True and args.get("batch", 1) in (1, None),
    )
