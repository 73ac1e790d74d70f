"""Data aggregator: values gathered across runs of one definition, in this server process, and emitted as one
aggregate per (field, mode) when the interval closes (after `interval` seconds / minutes / hours, or `interval`
runs); runs inside an interval give empty (null) outputs. Each output is named `<field>_<mode>`.

Lists are gathered item by item (a list of class names counts each name). Aggregates are kept as running figures,
so memory stays small whatever the interval; `distinct` and `values_counts` keep at most `MAX_DISTINCT` values.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from visionserve.tracking.state import KeyedStates
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputError, StepInputs, selector,
)  # fmt: skip
from visionserve.workflows.blocks.expression import named_values
from visionserve.workflows.operations.language import Operation
from visionserve.workflows.values import Detections

Mode = Literal["sum", "avg", "max", "min", "count", "distinct", "count_distinct", "values_counts"]
MODE_KINDS: dict[str, tuple[str, ...]] = {
    "sum": (kinds.FLOAT,), "avg": (kinds.FLOAT,), "max": (kinds.FLOAT,), "min": (kinds.FLOAT,),
    "count": (kinds.INTEGER,), "distinct": (kinds.LIST_OF_VALUES,), "count_distinct": (kinds.INTEGER,),
    "values_counts": (kinds.DICTIONARY,),
}  # fmt: skip
UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600}
MAX_DISTINCT = 10_000
MAX_AGGREGATORS = 1024  # definitions x steps remembered; the least recently used is forgotten first


class DataAggregatorManifest(BlockManifest):
    type: Literal["roboflow_core/data_aggregator@v1", "DataAggregator"]
    data: dict[str, selector(kinds.WILDCARD)] = Field(min_length=1)  # type: ignore[valid-type]
    data_operations: dict[str, list[Operation]] = Field(default_factory=dict)
    aggregation_mode: dict[str, list[Mode]] = Field(min_length=1)
    interval: int = Field(1, ge=1)
    interval_unit: Literal["seconds", "minutes", "hours", "runs"] = "seconds"

    @model_validator(mode="after")
    def _modes_name_data(self) -> DataAggregatorManifest:
        unknown = sorted(set(self.aggregation_mode) - set(self.data))
        if unknown:
            raise ValueError(f"aggregation_mode names {unknown}, which are not in data ({sorted(self.data)})")
        return self


def aggregated_outputs(manifest: DataAggregatorManifest) -> tuple[Output, ...]:
    return tuple(Output(f"{name}_{mode}", MODE_KINDS[mode])
                 for name, modes in manifest.aggregation_mode.items() for mode in modes)  # fmt: skip


def _items(value: Any) -> Iterable[Any]:
    if isinstance(value, Detections):
        raise StepInputError("detections cannot be aggregated: turn them into values first with data_operations.")
    if isinstance(value, (list, tuple)):
        return [item for element in value for item in _items(element)]
    return [] if value is None else [value]


@dataclass
class _Figures:
    """Running aggregates of one field over one interval."""

    count: int = 0
    numbers: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None
    counts: Counter = field(default_factory=Counter)

    def add(self, item: Any) -> None:
        self.count += 1
        key = item if isinstance(item, (str, int, float, bool)) else str(item)
        if key in self.counts or len(self.counts) < MAX_DISTINCT:
            self.counts[key] += 1
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            self.numbers += 1
            self.total += item
            self.low = item if self.low is None else min(self.low, item)
            self.high = item if self.high is None else max(self.high, item)

    def result(self, mode: str) -> Any:
        table = {
            "sum": lambda: self.total, "avg": lambda: self.total / self.numbers if self.numbers else None,
            "max": lambda: self.high, "min": lambda: self.low, "count": lambda: self.count,
            "distinct": lambda: list(self.counts), "count_distinct": lambda: len(self.counts),
            "values_counts": lambda: dict(self.counts),
        }  # fmt: skip
        return table[mode]()


@dataclass
class _Aggregator:
    started: float = field(default_factory=time.monotonic)
    runs: int = 0
    figures: dict[str, _Figures] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, step: DataAggregatorManifest, values: dict[str, Any]) -> dict[str, Any]:
        """Gather one run's values; the aggregates when this run closes the interval, else nulls."""
        with self.lock:
            self.runs += 1
            for name in step.aggregation_mode:
                figures = self.figures.setdefault(name, _Figures())
                for item in _items(values[name]):
                    figures.add(item)
            now = time.monotonic()
            if step.interval_unit == "runs":
                closed = self.runs >= step.interval
            else:
                closed = now - self.started >= step.interval * UNIT_SECONDS[step.interval_unit]
            if not closed:
                return {}
            result = {f"{name}_{mode}": self.figures.get(name, _Figures()).result(mode)
                      for name, modes in step.aggregation_mode.items() for mode in modes}  # fmt: skip
            self.started, self.runs, self.figures = now, 0, {}
            return result


_aggregators: KeyedStates[_Aggregator] = KeyedStates(_Aggregator, MAX_AGGREGATORS)


def aggregate(step: DataAggregatorManifest, batch: list[StepInputs], context: StepContext) -> list[dict[str, Any]]:
    aggregator = _aggregators.get((context.workflow_key, step.name))
    return [aggregator.add(step, named_values(inputs["data"], step.data_operations)) for inputs in batch]


BLOCK = BlockSpec(
    DataAggregatorManifest, (), aggregate, outputs_of=aggregated_outputs, human_name="Data Aggregator",
)  # fmt: skip
