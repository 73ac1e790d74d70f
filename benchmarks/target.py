"""One performance target's outcome, as every benchmark reports it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    ratio: float
    goal: str
    passed: bool


def median_of(values: list[float]) -> tuple[float, str]:
    """The median, and every run's value for the record ("1.02 (0.98, 1.02, 1.05)")."""
    middle = statistics.median(values)
    runs = ", ".join(f"{value:.2f}" for value in values)
    return middle, f"{middle:.2f} ({runs})" if len(values) > 1 else f"{middle:.2f}"
