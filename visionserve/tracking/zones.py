"""Counting across frames with supervision's zones: tracked objects crossing a line (in / out), and how long each
tracked object has been inside a polygon. One counter per (definition, step, video), fed frame by frame."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import supervision as sv

from visionserve.tracking.supervision_bridge import to_supervision
from visionserve.workflows.values import Detections

ANCHORS = tuple(position.name for position in sv.Position if position is not sv.Position.CENTER_OF_MASS)
MAX_TIMED_OBJECTS = 16_384  # tracker ids remembered per zone; the oldest are forgotten first


def checked_anchor(value: object) -> str:
    """A box anchor's name (supervision's `Position`), as the blocks' `triggering_anchor` takes it."""
    if value not in ANCHORS:
        raise ValueError(f"triggering_anchor must be one of {', '.join(ANCHORS)}, not {value!r}.")
    return str(value)


def _untracked(detections: Detections) -> bool:
    return len(detections) > 0 and detections.tracker_id is None


@dataclass
class LineCounter:
    """Cumulative in/out counts of tracked objects whose anchor crosses the segment from `start` to `end`."""

    start: tuple[float, float]
    end: tuple[float, float]
    anchor: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    zone: sv.LineZone = field(init=False)

    def __post_init__(self) -> None:
        self.zone = sv.LineZone(sv.Point(*self.start), sv.Point(*self.end),
                                triggering_anchors=(sv.Position[self.anchor],))  # fmt: skip

    def update(self, detections: Detections) -> tuple[int, int, Detections, Detections]:
        """(count in, count out, detections that crossed in this frame, those that crossed out)."""
        if _untracked(detections):
            raise ValueError("the line counter needs tracked detections (a byte tracker step before it).")
        with self.lock:
            if len(detections) == 0:
                return self.zone.in_count, self.zone.out_count, detections, detections
            crossed_in, crossed_out = self.zone.trigger(to_supervision(detections))
            return self.zone.in_count, self.zone.out_count, detections.selected(crossed_in), detections.selected(
                crossed_out)  # fmt: skip


@dataclass
class TimeInZone:
    """Seconds each tracked object has spent inside the polygon, by the frames' own clock (see `clock`)."""

    polygon: Sequence[Sequence[float]]
    anchor: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    entered: OrderedDict[int, float] = field(default_factory=OrderedDict)  # tracker id -> when it entered
    zone: sv.PolygonZone = field(init=False)

    def __post_init__(self) -> None:
        self.zone = sv.PolygonZone(np.asarray(self.polygon, dtype=np.int64).reshape(-1, 2),
                                   triggering_anchors=(sv.Position[self.anchor],))  # fmt: skip

    def update(self, detections: Detections, now: float, keep_outside: bool, reset_outside: bool) -> Detections:
        """The detections with a `time_in_zone` field each (0 outside the zone), only those inside unless
        `keep_outside`; an object that leaves starts from 0 when it comes back if `reset_outside`."""
        if _untracked(detections):
            raise ValueError("time in zone needs tracked detections (a byte tracker step before it).")
        if len(detections) == 0:
            return detections
        with self.lock:
            inside = self.zone.trigger(to_supervision(detections))
            times = []
            for tracker_id, is_inside in zip(detections.tracker_id.tolist(), inside.tolist()):
                if is_inside:
                    started = self.entered.setdefault(tracker_id, now)
                    self.entered.move_to_end(tracker_id)
                    times.append(max(0.0, now - started))
                else:
                    if reset_outside:
                        self.entered.pop(tracker_id, None)
                    times.append(0.0)
            while len(self.entered) > MAX_TIMED_OBJECTS:
                self.entered.popitem(last=False)
        timed = replace(detections, extra={**detections.extra, "time_in_zone": times})
        return timed if keep_outside else timed.selected(np.asarray(inside, dtype=bool))
