"""State kept across requests or frames (trackers, counters, aggregates), keyed, bounded: the least recently used
key is forgotten first, so a server fed endless new video ids or definitions keeps a fixed amount of it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

State = TypeVar("State")


class KeyedStates(Generic[State]):
    def __init__(self, make: Callable[[], State], max_keys: int) -> None:
        self._make = make
        self._max_keys = max_keys
        self._states: OrderedDict[Hashable, State] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> State:
        """The state of `key` (made on first use), now the most recently used."""
        with self._lock:
            state = self._states.pop(key, None)
            if state is None:
                state = self._make()
            self._states[key] = state
            while len(self._states) > self._max_keys:
                self._states.popitem(last=False)
            return state
