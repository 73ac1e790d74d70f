"""The reference's operation language (its "universal query language"), as pydantic models: operations that
transform a value, and statements that compare values. Validated with the step's manifest, so an unknown operation
or comparator is a compile error naming the step and property.

Only data is described here; `evaluate.py` runs it (no `eval`, no attribute access by name).
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

DETECTION_PROPERTIES = (
    "confidence", "class_name", "class_id", "x_min", "y_min", "x_max", "y_max", "size", "center", "top_left",
    "top_right", "bottom_left", "bottom_right", "tracker_id", "detection_id",
)  # fmt: skip
CLASSIFICATION_PROPERTIES = ("top_class", "top_class_confidence", "all_classes", "all_confidences")
IMAGE_PROPERTIES = ("size", "height", "width", "aspect_ratio")
SELECTION_MODES = ("all", "first", "last", "left_most", "right_most", "top_confidence")
AGGREGATIONS = ("sum", "avg", "max", "min", "first", "last")
BINARY_COMPARATORS = (
    "==", "!=", "(Number) ==", "(Number) !=", "(Number) >", "(Number) >=", "(Number) <", "(Number) <=",
    "(String) ==", "(String) !=", "(String) startsWith", "(String) endsWith", "(String) contains",
    "in (Sequence)", "(Sequence) contains", "any in (Sequence)", "all in (Sequence)",
)  # fmt: skip
UNARY_OPERATORS = (
    "Exists", "DoesNotExist", "(Boolean) is True", "(Boolean) is False", "(Sequence) is empty",
    "(Sequence) is not empty",
)  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExtractDetectionProperty(_Strict):
    """A property of each detection (a list), or of the one detection a filter looks at."""

    type: Literal["ExtractDetectionProperty"]
    property_name: Literal[DETECTION_PROPERTIES]  # type: ignore[valid-type]


class ClassificationPropertyExtract(_Strict):
    """The top class, its confidence, or all classes / confidences of a classification."""

    type: Literal["ClassificationPropertyExtract"]
    property_name: Literal[CLASSIFICATION_PROPERTIES]  # type: ignore[valid-type]


class ExtractImageProperty(_Strict):
    """An image's size (pixels), height, width or aspect ratio."""

    type: Literal["ExtractImageProperty"]
    property_name: Literal[IMAGE_PROPERTIES]  # type: ignore[valid-type]


class SequenceLength(_Strict):
    """How many items a list (or detections value) has."""

    type: Literal["SequenceLength"]


class SequenceAggregate(_Strict):
    """One number from a list: sum, avg, max, min, first or last."""

    type: Literal["SequenceAggregate"]
    mode: Literal[AGGREGATIONS]  # type: ignore[valid-type]


class SequenceMap(_Strict):
    """Each item of a list replaced by its entry in the lookup table (unchanged when absent)."""

    type: Literal["SequenceMap"]
    lookup_table: dict[str, Any]


class LookupTable(_Strict):
    """A value replaced by its entry in the lookup table (unchanged when absent)."""

    type: Literal["LookupTable"]
    lookup_table: dict[str, Any]


class StringToUpperCase(_Strict):
    """A string in upper case."""

    type: Literal["StringToUpperCase"]


class StringToLowerCase(_Strict):
    """A string in lower case."""

    type: Literal["StringToLowerCase"]


class ToString(_Strict):
    """A value as a string."""

    type: Literal["ToString"]


class ToNumber(_Strict):
    """A string or boolean as an int or float."""

    type: Literal["ToNumber"]
    cast_to: Literal["int", "float"] = "float"


class ToBoolean(_Strict):
    """A value as true or false."""

    type: Literal["ToBoolean"]


class NumberRound(_Strict):
    """A number rounded to `decimal_digits`."""

    type: Literal["NumberRound"]
    decimal_digits: int = Field(ge=0, le=15)


class Multiply(_Strict):
    """A number multiplied by `other`."""

    type: Literal["Multiply"]
    other: float


class Divide(_Strict):
    """A number divided by `other`."""

    type: Literal["Divide"]
    other: float


class DetectionsSelection(_Strict):
    """All detections, or one: first, last, left-most, right-most or top confidence."""

    type: Literal["DetectionsSelection"]
    mode: Literal[SELECTION_MODES]  # type: ignore[valid-type]


class SortDetections(_Strict):
    """Detections sorted by a property."""

    type: Literal["SortDetections"]
    mode: Literal["confidence", "x_min", "y_min", "x_max", "y_max", "size", "center_x", "center_y"] = "confidence"
    ascending: bool = True


class DetectionsOffset(_Strict):
    """Boxes grown by `offset_x` / `offset_y` pixels (half each side)."""

    type: Literal["DetectionsOffset"]
    offset_x: int = Field(ge=-100_000, le=100_000)
    offset_y: int = Field(ge=-100_000, le=100_000)


class DetectionsRename(_Strict):
    """Class names renamed by `class_map` (`strict`: every class must be in it)."""

    type: Literal["DetectionsRename"]
    class_map: dict[str, str]
    strict: bool = False


class DetectionsFilter(_Strict):
    """Only the detections for which `filter_operation` holds (`_` is each detection)."""

    type: Literal["DetectionsFilter"]
    filter_operation: StatementGroup


OPERATIONS = (
    ExtractDetectionProperty, ClassificationPropertyExtract, ExtractImageProperty, SequenceLength, SequenceAggregate,
    SequenceMap, LookupTable, StringToUpperCase, StringToLowerCase, ToString, ToNumber, ToBoolean, NumberRound,
    Multiply, Divide, DetectionsSelection, SortDetections, DetectionsOffset, DetectionsRename, DetectionsFilter,
)
Operation = Annotated[Union[OPERATIONS], Field(discriminator="type")]  # type: ignore[valid-type]


class StaticOperand(_Strict):
    type: Literal["StaticOperand"]
    value: Any
    operations: list[Operation] = Field(default_factory=list, max_length=64)


class DynamicOperand(_Strict):
    type: Literal["DynamicOperand"]
    operand_name: str = "_"
    operations: list[Operation] = Field(default_factory=list, max_length=64)


Operand = Annotated[Union[StaticOperand, DynamicOperand], Field(discriminator="type")]


class Comparator(_Strict):
    type: Literal[BINARY_COMPARATORS]  # type: ignore[valid-type]


class UnaryOperator(_Strict):
    type: Literal[UNARY_OPERATORS]  # type: ignore[valid-type]


class BinaryStatement(_Strict):
    type: Literal["BinaryStatement"]
    left_operand: Operand
    comparator: Comparator
    right_operand: Operand
    negate: bool = False


class UnaryStatement(_Strict):
    type: Literal["UnaryStatement"]
    operand: Operand
    operator: UnaryOperator
    negate: bool = False


class StatementGroup(_Strict):
    type: Literal["StatementGroup"] = "StatementGroup"
    operator: Literal["and", "or"] = "or"
    statements: list[Statement] = Field(min_length=1, max_length=64)


Statement = Annotated[Union[BinaryStatement, UnaryStatement, StatementGroup], Field(discriminator="type")]

DetectionsFilter.model_rebuild()
StatementGroup.model_rebuild()


def language_description() -> dict[str, Any]:
    """What `/workflows/blocks/describe` lists as `universal_query_language_description`."""
    return {
        "operations_description": [
            {"operation_type": typing.get_args(model.model_fields["type"].annotation)[0],
             "description": (model.__doc__ or "").strip()}
            for model in OPERATIONS
        ],
        "operators_descriptions": [{"operator_type": name, "operands_number": 2} for name in BINARY_COMPARATORS]
        + [{"operator_type": name, "operands_number": 1} for name in UNARY_OPERATORS],
    }


