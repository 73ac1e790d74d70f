"""Cross-request dynamic batching: forward passes of one model that wait for the same cores go into one pass.

Each request pre-processes its own images and post-processes its own outputs in its own thread; only the forward
pass is shared. The first waiting request leads: it waits for a core slot (`CoreBudget`), then, for up to
`max_delay_s` (Triton's `max_queue_delay`; 0 on CPUs, where the wait for a free core is the window), gathers the
tensors queued behind it, up to `max_rows` rows of the same shape, runs them as one batch and hands each request its
rows. So batches form only under load: a request that finds a core free runs at once, alone. A merged pass that
fails is run again request by request, so a request that cannot run fails alone.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from visionserve.runtime.onnx_model import OnnxModel


_merged_lock = threading.Lock()
_merged = {"passes": 0, "requests": 0}  # process totals, for /metrics: merged passes and the requests they carried


def merged_totals() -> dict[str, int]:
    with _merged_lock:
        return dict(_merged)


@dataclass(frozen=True)
class BatchingPolicy:
    max_rows: int  # rows (images) in one merged pass, at most
    max_delay_s: float = 0.0  # how long a leader holding a core waits for more requests to join


@dataclass(eq=False)
class _Pass:
    """One request's forward pass, waiting to be run (alone or merged)."""

    tensor: np.ndarray
    may_widen: bool
    done: threading.Event = field(default_factory=threading.Event)
    taken: bool = False  # gathered into a leader's group
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return len(self.tensor)


class DynamicBatcher:
    def __init__(self, runner: OnnxModel, policy: BatchingPolicy) -> None:
        self.runner = runner
        self.policy = policy
        self._queued: list[_Pass] = []
        self._leading = False  # a request is waiting for a core to run the queue's head
        self._changed = threading.Condition()

    @property
    def queued(self) -> int:
        """Passes waiting for a leader or a core."""
        with self._changed:
            return len(self._queued)

    def run(self, tensor: np.ndarray, may_widen: bool = False) -> list[np.ndarray]:
        """The outputs of `tensor`'s rows, as `OnnxModel.run` gives them."""
        mine = _Pass(tensor, may_widen)
        with self._changed:
            self._queued.append(mine)
            self._changed.notify_all()
            while not mine.done.is_set() and (mine.taken or self._leading or self._queued[0] is not mine):
                self._changed.wait()
            leads = not mine.done.is_set()
            self._leading = self._leading or leads
        if leads:
            self._lead(mine)
        if mine.error is not None:
            raise mine.error
        assert mine.outputs is not None
        return mine.outputs

    def _lead(self, head: _Pass) -> None:
        group: list[_Pass] = []
        try:
            with self.runner.cores.forward(head.may_widen and self.runner.lone_session is not None) as wide:
                group = self._gather(head)
                self._run_group(group, wide)
        except BaseException as error:  # noqa: BLE001 - interrupted: no pass of the group may wait for ever
            with self._changed:
                if not group:  # still queued, and still leading
                    self._queued.remove(head)
                    self._leading = False
                for member in group or [head]:
                    if not member.done.is_set():
                        member.error = error
                        member.done.set()
                self._changed.notify_all()

    def _gather(self, head: _Pass) -> list[_Pass]:
        """The head and the passes of the same shape queued behind it, up to `max_rows` rows, waiting up to
        `max_delay_s` for more; the rest stay queued for the next leader."""
        deadline = time.monotonic() + self.policy.max_delay_s
        with self._changed:
            while True:
                group = self._fitting(head)
                remaining = deadline - time.monotonic()
                if sum(p.rows for p in group) >= self.policy.max_rows or remaining <= 0:
                    break
                self._changed.wait(remaining)
            for taken in group:
                self._queued.remove(taken)
                taken.taken = True
            self._leading = False  # the next queued pass may lead while this group runs
            self._changed.notify_all()
        return group

    def _fitting(self, head: _Pass) -> list[_Pass]:
        group, rows = [head], head.rows
        for queued in self._queued:
            if queued is head or queued.tensor.shape[1:] != head.tensor.shape[1:]:
                continue
            if rows + queued.rows > self.policy.max_rows:
                break
            group.append(queued)
            rows += queued.rows
        return group

    def _run_group(self, group: list[_Pass], wide: bool) -> None:
        if len(group) == 1:
            self._run_alone(group[0], wide)
            return
        with _merged_lock:
            _merged["passes"] += 1
            _merged["requests"] += len(group)
        try:
            outputs = self.runner.run_holding(np.concatenate([p.tensor for p in group]), wide)
            total = sum(p.rows for p in group)
            if any(len(output) != total for output in outputs):  # not one output row per input row
                raise ValueError("outputs do not follow the batch axis")
        except Exception:  # noqa: BLE001 - find which request cannot run: each runs alone
            for member in group:
                self._run_alone(member, wide)
            return
        start = 0
        for member in group:
            member.outputs = [output[start : start + member.rows] for output in outputs]
            start += member.rows
            member.done.set()
        with self._changed:
            self._changed.notify_all()

    def _run_alone(self, member: _Pass, wide: bool) -> None:
        try:
            member.outputs = self.runner.run_holding(member.tensor, wide)
        except BaseException as error:  # noqa: BLE001 - the request's own failure, raised in its own thread
            member.error = error
        member.done.set()
        with self._changed:
            self._changed.notify_all()
