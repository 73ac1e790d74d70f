"""Trackers from Roboflow's `trackers` package (supervision's own ByteTrack is deprecated in its favour): ByteTrack,
with the reference's block settings mapped onto it, and for stream pipelines SORT and OC-SORT with their defaults.

* `track_activation_threshold`: a detection at least this confident starts a track, and it is also where the
  two-stage association splits high from low confidence;
* `minimum_matching_threshold` is a cost (1 - IoU) in the reference: the IoU needed to match is 1 - it;
* `lost_track_buffer` frames (at 30 fps) a lost track is kept; the frame rate comes from the video's metadata;
* `minimum_consecutive_frames` a track must be matched before it gets an id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from visionserve.tracking.supervision_bridge import rows, to_supervision
from visionserve.workflows.values import Detections

TRACKERS_MISSING = (
    "Tracking needs Roboflow's `trackers` package: pip install --no-deps trackers==2.6.1 (its opencv-python "
    "requirement would clash with the opencv-python-headless this server uses; `make install` does this)."
)


class TrackersMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class ByteTrackSettings:
    track_activation_threshold: float = 0.25
    lost_track_buffer: int = 30
    minimum_matching_threshold: float = 0.8
    minimum_consecutive_frames: int = 1
    frame_rate: float = 30.0


def _library():  # -> the trackers module
    try:
        import trackers
    except ImportError:
        raise TrackersMissing(TRACKERS_MISSING) from None
    return trackers


def new_tracker(settings: ByteTrackSettings):  # -> trackers.ByteTrackTracker
    return _library().ByteTrackTracker(
        lost_track_buffer=settings.lost_track_buffer,
        frame_rate=settings.frame_rate,
        track_activation_threshold=settings.track_activation_threshold,
        high_conf_det_threshold=settings.track_activation_threshold,
        minimum_iou_threshold=1.0 - settings.minimum_matching_threshold,
        minimum_consecutive_frames=settings.minimum_consecutive_frames,
    )


LIBRARY_TRACKERS = {"sort": "SORTTracker", "ocsort": "OCSORTTracker"}  # besides ByteTrack: the library's defaults


def stream_tracker(kind: str, frame_rate: float):  # -> a trackers tracker
    """The tracker a stream pipeline asked for: ByteTrack with the block's defaults, or SORT / OC-SORT."""
    if kind == "bytetrack":
        return new_tracker(replace(ByteTrackSettings(), frame_rate=frame_rate))
    return getattr(_library(), LIBRARY_TRACKERS[kind])(frame_rate=frame_rate)


def track(tracker, detections: Detections) -> Detections:
    """The detections the tracker gave an id this frame (in their input order), each with its `tracker_id`."""
    answer = tracker.update(to_supervision(detections))
    ids = np.asarray(answer.tracker_id if answer.tracker_id is not None else [], dtype=np.int64)
    matched = rows(answer)
    order = np.argsort(matched[ids >= 0], kind="stable")
    kept, kept_ids = matched[ids >= 0][order], ids[ids >= 0][order]
    return replace(detections.selected(kept), tracker_id=kept_ids)
