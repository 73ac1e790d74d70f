"""Tracking and counting across frames (ByteTrack from Roboflow's `trackers`, line crossing, time in zone): the one
implementation behind the workflow blocks of those names and the stream pipelines' `track` option."""
