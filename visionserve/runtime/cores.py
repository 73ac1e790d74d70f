"""The process's forward passes share its cores through one budget: under load each pass takes one slot (one
single-thread pass per core), and a request that is alone may take every slot for a pass over all cores.

"Alone" needs hysteresis. Under steady load from N clients there are instants when only one job is in flight
(the others' clients are reading their answers); if a job widened then, the next arrivals would wait for the wide
pass, finish alone in turn and widen too, and the server would fall into one wide pass at a time (~25% fewer
answers per second on 2 cores than passes side by side). So a job widens only when no other job has shared the
server for `quiet_s`: long against the gaps between requests under load (a few milliseconds), short against a
person's pace.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class CoreBudget:
    def __init__(self, slots: int, quiet_s: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.slots = max(1, slots)
        self.quiet_s = quiet_s
        self._clock = clock
        self._free = self.slots
        self._jobs = 0
        self._last_shared = -float("inf")  # when two or more jobs were last in flight together
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self.wide_passes = 0
        self.narrow_passes = 0

    @contextmanager
    def job(self) -> Iterator[None]:
        """One inference job in flight (a request, whatever its image count)."""
        with self._changed:
            self._jobs += 1
            self._note_sharing()
        try:
            yield
        finally:
            with self._changed:
                self._note_sharing()
                self._jobs -= 1

    def _note_sharing(self) -> None:
        if self._jobs > 1:
            self._last_shared = self._clock()

    def _alone(self) -> bool:
        return self._jobs <= 1 and self._clock() - self._last_shared >= self.quiet_s

    @contextmanager
    def forward(self, may_widen: bool) -> Iterator[bool]:
        """Hold cores for one forward pass; yields True when the pass may use every core (its job is alone and
        every slot is free), else False for one slot, waiting for one if none is free. A lone job never waits
        to widen: passes outside any job could keep it waiting for ever, and a pass on one slot is soon done."""
        with self._changed:
            wide = may_widen and self._free == self.slots and not self._waiting and self._alone()
            need = self.slots if wide else 1
            ticket = object()  # first come, first served: a thread that just released a slot cannot barge back
            self._waiting.append(ticket)
            while self._waiting[0] is not ticket or self._free < need:
                self._changed.wait()
            self._waiting.popleft()
            self._free -= need
            self._changed.notify_all()  # the next in line may fit too
            if wide:
                self.wide_passes += 1
            else:
                self.narrow_passes += 1
        try:
            yield wide
        finally:
            with self._changed:
                self._free += need
                self._changed.notify_all()
