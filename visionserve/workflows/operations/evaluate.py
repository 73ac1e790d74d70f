"""A small evaluator for the operation language (`language.py`): each operation and comparator is a plain Python
function chosen from a table by its type name. Nothing is ever `eval`-ed, and no attribute is read by name."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Number
from typing import Any

import numpy as np

from visionserve.workflows.errors import StepInputError
from visionserve.workflows.values import Detections, WorkflowImage


@dataclass(frozen=True)
class OneDetection:
    """The detection a filter looks at (`_` in its statement)."""

    detections: Detections
    index: int


def _type_name(value: Any) -> str:
    if isinstance(value, Detections):
        return "detections"
    if isinstance(value, OneDetection):
        return "one detection"
    return type(value).__name__


def _refuse(operation: str, value: Any) -> StepInputError:
    return StepInputError(f"operation {operation} cannot apply to a value of type {_type_name(value)}.")


def _detection_property(detections: Detections, name: str) -> np.ndarray | list[Any]:
    x1, y1, x2, y2 = detections.xyxy.T
    columns: dict[str, Callable[[], Any]] = {
        "confidence": lambda: detections.confidence, "class_name": lambda: detections.class_name,
        "class_id": lambda: detections.class_id, "x_min": lambda: x1, "y_min": lambda: y1, "x_max": lambda: x2,
        "y_max": lambda: y2, "size": lambda: detections.sizes, "detection_id": lambda: detections.detection_id,
        "center": lambda: np.stack([(x1 + x2) / 2, (y1 + y2) / 2], axis=1), "top_left": lambda: np.stack([x1, y1], 1),
        "top_right": lambda: np.stack([x2, y1], 1), "bottom_left": lambda: np.stack([x1, y2], 1),
        "bottom_right": lambda: np.stack([x2, y2], 1),
        "tracker_id": lambda: detections.tracker_id if detections.tracker_id is not None else [None] * len(detections),
    }  # fmt: skip
    return columns[name]()


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def extract_detection_property(value: Any, name: str) -> Any:
    if isinstance(value, OneDetection):
        return _plain(_detection_property(value.detections, name)[value.index])
    if isinstance(value, Detections):
        return _plain(_detection_property(value, name))
    raise _refuse("ExtractDetectionProperty", value)


def _classification_property(value: Any, name: str) -> Any:
    if not isinstance(value, Mapping) or "predictions" not in value:
        raise _refuse("ClassificationPropertyExtract", value)
    predictions = value["predictions"]
    if isinstance(predictions, Mapping):  # multi-label: {class: {confidence, class_id}}
        chosen = list(value.get("predicted_classes") or [])
        table = {
            "top_class": chosen, "top_class_confidence": [predictions[name]["confidence"] for name in chosen],
            "all_classes": list(predictions), "all_confidences": [item["confidence"] for item in predictions.values()],
        }  # fmt: skip
    else:
        table = {
            "top_class": value.get("top"), "top_class_confidence": value.get("confidence"),
            "all_classes": [item["class"] for item in predictions],
            "all_confidences": [item["confidence"] for item in predictions],
        }  # fmt: skip
    return table[name]


def _image_property(value: Any, name: str) -> Any:
    if not isinstance(value, WorkflowImage):
        raise _refuse("ExtractImageProperty", value)
    table = {"size": value.width * value.height, "height": value.height, "width": value.width,
             "aspect_ratio": value.width / value.height if value.height else 0.0}  # fmt: skip
    return table[name]


def _length(operation: str, value: Any) -> int:
    return len(value) if isinstance(value, Detections) else len(_sequence(operation, value))


def _sequence(operation: str, value: Any) -> Sequence[Any]:
    if isinstance(value, (list, tuple, str)):
        return value  # type: ignore[return-value]
    raise _refuse(operation, value)


def _number(operation: str, value: Any) -> float:
    if isinstance(value, Number) and not isinstance(value, bool):
        return value  # type: ignore[return-value]
    raise _refuse(operation, value)


def _aggregate(values: Sequence[Any], mode: str) -> Any:
    if not values:
        return None
    if mode in ("first", "last"):  # any items, not only numbers (a class name, say)
        return values[0] if mode == "first" else values[-1]
    numbers = [_number("SequenceAggregate", value) for value in values]
    table = {"sum": lambda: sum(numbers), "avg": lambda: sum(numbers) / len(numbers), "max": lambda: max(numbers),
             "min": lambda: min(numbers)}  # fmt: skip
    return table[mode]()


def _selected(detections: Detections, mode: str) -> Detections:
    if mode == "all" or len(detections) == 0:
        return detections
    centers = (detections.xyxy[:, 0] + detections.xyxy[:, 2]) / 2
    index = {
        "first": 0, "last": len(detections) - 1, "left_most": int(np.argmin(centers)),
        "right_most": int(np.argmax(centers)), "top_confidence": int(np.argmax(detections.confidence)),
    }[mode]  # fmt: skip
    return detections.selected(np.array([index]))


def _sorted(detections: Detections, mode: str, ascending: bool) -> Detections:
    x1, y1, x2, y2 = detections.xyxy.T
    keys = {"confidence": detections.confidence, "x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2,
            "size": detections.sizes, "center_x": (x1 + x2) / 2, "center_y": (y1 + y2) / 2}[mode]  # fmt: skip
    order = np.argsort(keys, kind="stable")
    return detections.selected(order if ascending else order[::-1])


def _renamed(detections: Detections, class_map: Mapping[str, str], strict: bool) -> Detections:
    missing = sorted({str(name) for name in detections.class_name} - set(class_map))
    if strict and missing:
        raise StepInputError(f"DetectionsRename (strict): classes {missing} are not in class_map.")
    names = np.array([class_map.get(str(name), name) for name in detections.class_name], dtype=object)
    return replace(detections, class_name=names.reshape(len(detections)))


def _detections(operation: str, value: Any) -> Detections:
    if isinstance(value, Detections):
        return value
    raise _refuse(operation, value)


def apply(value: Any, operation: Any, parameters: Mapping[str, Any]) -> Any:  # noqa: C901 - a dispatch table
    kind = operation.type
    if kind == "ExtractDetectionProperty":
        return extract_detection_property(value, operation.property_name)
    if kind == "ClassificationPropertyExtract":
        return _classification_property(value, operation.property_name)
    if kind == "ExtractImageProperty":
        return _image_property(value, operation.property_name)
    if kind == "SequenceLength":
        return _length(kind, value)
    if kind == "SequenceAggregate":
        return _aggregate(list(_sequence(kind, value)), operation.mode)
    if kind == "SequenceMap":
        return [operation.lookup_table.get(str(item), item) for item in _sequence(kind, value)]
    if kind == "LookupTable":
        return operation.lookup_table.get(str(value), value)
    if kind in ("StringToUpperCase", "StringToLowerCase"):
        if not isinstance(value, str):
            raise _refuse(kind, value)
        return value.upper() if kind == "StringToUpperCase" else value.lower()
    if kind == "ToString":
        return str(value)
    if kind == "ToNumber":
        try:
            return int(float(value)) if operation.cast_to == "int" else float(value)
        except (TypeError, ValueError):
            raise _refuse(kind, value) from None
    if kind == "ToBoolean":
        return value.strip().lower() in ("true", "1", "yes") if isinstance(value, str) else bool(value)
    if kind == "NumberRound":
        return round(_number(kind, value), operation.decimal_digits)
    if kind == "Multiply":
        return _number(kind, value) * operation.other
    if kind == "Divide":
        return _number(kind, value) / operation.other if operation.other else math.nan
    if kind == "DetectionsSelection":
        return _selected(_detections(kind, value), operation.mode)
    if kind == "SortDetections":
        return _sorted(_detections(kind, value), operation.mode, operation.ascending)
    if kind == "DetectionsOffset":
        return _detections(kind, value).grown(operation.offset_x, operation.offset_y)
    if kind == "DetectionsRename":
        return _renamed(_detections(kind, value), operation.class_map, operation.strict)
    if kind == "DetectionsFilter":
        return filter_detections(_detections(kind, value), operation.filter_operation, parameters)
    raise StepInputError(f"operation {kind} is not supported.")


def apply_all(value: Any, operations: Sequence[Any], parameters: Mapping[str, Any]) -> Any:
    for operation in operations:
        value = apply(value, operation, parameters)
    return value


def filter_detections(detections: Detections, statement: Any, parameters: Mapping[str, Any]) -> Detections:
    keep = [evaluate(statement, {**parameters, "_": OneDetection(detections, i)}) for i in range(len(detections))]
    return detections.selected(np.array(keep, dtype=bool).reshape(len(detections)))


def _operand(operand: Any, parameters: Mapping[str, Any]) -> Any:
    if operand.type == "StaticOperand":
        return apply_all(operand.value, operand.operations, parameters)
    if operand.operand_name not in parameters:
        known = ", ".join(sorted(name for name in parameters if name != "_")) or "none"
        raise StepInputError(f"operand {operand.operand_name!r} is not among the evaluation parameters ({known}).")
    return apply_all(parameters[operand.operand_name], operand.operations, parameters)


def _numeric(test: Callable[[float, float], bool], name: str) -> Callable[[Any, Any], bool]:
    return lambda a, b: test(_number(name, a), _number(name, b))


_BINARY: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne,
    **{f"(Number) {symbol}": _numeric(test, f"(Number) {symbol}") for symbol, test in (
        ("==", operator.eq), ("!=", operator.ne), (">", operator.gt), (">=", operator.ge), ("<", operator.lt),
        ("<=", operator.le))},
    "(String) ==": lambda a, b: isinstance(a, str) and a == b, "(String) !=": lambda a, b: a != b,
    "(String) startsWith": lambda a, b: isinstance(a, str) and isinstance(b, str) and a.startswith(b),
    "(String) endsWith": lambda a, b: isinstance(a, str) and isinstance(b, str) and a.endswith(b),
    "(String) contains": lambda a, b: isinstance(a, str) and isinstance(b, str) and b in a,
    "in (Sequence)": lambda a, b: a in _sequence("in (Sequence)", b),
    "(Sequence) contains": lambda a, b: b in _sequence("(Sequence) contains", a),
    "any in (Sequence)": lambda a, b: any(x in _sequence("any in", b) for x in _sequence("any in", a)),
    "all in (Sequence)": lambda a, b: all(x in _sequence("all in", b) for x in _sequence("all in", a)),
}  # fmt: skip

_UNARY: dict[str, Callable[[Any], bool]] = {
    "Exists": lambda a: a is not None, "DoesNotExist": lambda a: a is None,
    "(Boolean) is True": lambda a: a is True, "(Boolean) is False": lambda a: a is False,
    "(Sequence) is empty": lambda a: _length("(Sequence) is empty", a) == 0,
    "(Sequence) is not empty": lambda a: _length("(Sequence) is not empty", a) > 0,
}  # fmt: skip


def evaluate(statement: Any, parameters: Mapping[str, Any]) -> bool:
    """The truth of a StatementGroup / BinaryStatement / UnaryStatement, given the named parameters."""
    if statement.type == "StatementGroup":
        results = (evaluate(item, parameters) for item in statement.statements)
        return all(results) if statement.operator == "and" else any(results)
    if statement.type == "BinaryStatement":
        left, right = _operand(statement.left_operand, parameters), _operand(statement.right_operand, parameters)
        result = bool(_BINARY[statement.comparator.type](_plain(left), _plain(right)))
    else:
        result = bool(_UNARY[statement.operator.type](_plain(_operand(statement.operand, parameters))))
    return result != statement.negate

