"""Selectors: `$inputs.<name>`, `$steps.<step>.<output>`, `$steps.<step>.*` and `$steps.<step>` (flow control)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from visionserve.workflows.errors import InvalidReferenceError

_SELECTOR = re.compile(r"\$(inputs|steps)\.([A-Za-z0-9_-]+)(?:\.([A-Za-z0-9_-]+|\*))?")
WILDCARD_OUTPUT = "*"


@dataclass(frozen=True)
class Selector:
    source: str  # "inputs" or "steps"
    name: str  # the input's or the step's name
    output: str | None = None  # a step's output, "*" for all of them, None for the step itself

    @property
    def text(self) -> str:
        tail = f".{self.output}" if self.output is not None else ""
        return f"${self.source}.{self.name}{tail}"


def is_selector(value: object) -> bool:
    return isinstance(value, str) and value.startswith("$")


def parse_selector(text: str, step: str | None = None, property_name: str | None = None) -> Selector:
    """The selector `text` spells; a malformed one is a 400 naming where it was found."""
    match = _SELECTOR.fullmatch(text)
    if match is None or (match.group(1) == "inputs" and match.group(3) is not None):
        raise InvalidReferenceError(
            f"{text!r} is not a selector: use $inputs.<name>, $steps.<step>.<output>, $steps.<step>.* or "
            "$steps.<step>.", step, property_name,
        )  # fmt: skip
    return Selector(match.group(1), match.group(2), match.group(3))


def selectors_in(value: object) -> Iterator[str]:
    """Selector strings in a property value: the value itself, a list's items, or a dict's values."""
    if is_selector(value):
        yield value  # type: ignore[misc]
    elif isinstance(value, list):
        yield from (item for item in value if is_selector(item))
    elif isinstance(value, dict):
        yield from (item for item in value.values() if is_selector(item))
