"""Byte tracker, line counter and time in zone through a real server: tracker ids equal Roboflow's `trackers` run
on /infer's boxes of the same frames, crossings equal supervision's `LineZone` on those tracks, times in zone equal
frame-number arithmetic; state is per video; the official `inference-sdk` reads the tracked output."""

from __future__ import annotations

import uuid
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import supervision as sv
from trackers import ByteTrackTracker

from tests.conftest import Server, b64, encode
from tests.test_workflows import DETECT, detector, infer, run_sdk

FRAMES = 8
STEP_X = 6  # pixels the scene moves right per frame
LINE_X = 150  # two shapes' centres cross it (129 -> 171 and 133 -> 175), two never do
ZONE = [[140, 0], [320, 0], [320, 320], [140, 320]]


def frames() -> list[bytes]:
    image = cv2.imread(str(DETECT[0]))
    moved = [cv2.warpAffine(image, np.float32([[1, 0, STEP_X * i], [0, 1, 0]]), (320, 320),
                            borderMode=cv2.BORDER_REPLICATE) for i in range(FRAMES)]  # fmt: skip
    return [encode(frame, ".png") for frame in moved]


@pytest.fixture(scope="module")
def http(fixture_server: Server):
    with fixture_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def video() -> list[bytes]:
    return frames()


def spec(steps: list[dict], outputs: dict[str, str]) -> dict:
    return {"version": "1.0",
            "inputs": [{"type": "WorkflowImage", "name": "image"}, {"type": "WorkflowVideoMetadata", "name": "meta"}],
            "steps": [detector(confidence=0.5), *steps],
            "outputs": [{"type": "JsonField", "name": name, "selector": selector} for name, selector in outputs.items()]}


TRACKER = {"type": "roboflow_core/byte_tracker@v3", "name": "track", "image": "$inputs.image",
           "detections": "$steps.det.predictions"}  # fmt: skip


def metadata(video_id: str, number: int, fps: float = 10.0) -> dict:
    return {"video_identifier": video_id, "frame_number": number, "fps": fps, "comes_from_video_file": True,
            "frame_timestamp": "2026-12-02T04:00:00+00:00"}  # fmt: skip


def run(http: httpx.Client, definition: dict, frame: bytes, meta: dict) -> dict:
    body = {"specification": definition, "inputs": {"image": {"type": "base64", "value": b64(frame)}, "meta": meta}}
    response = http.post("/workflows/run", json=body)
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]


def library_tracks(http: httpx.Client, video: list[bytes]) -> list[sv.Detections]:
    """ByteTrack from `trackers`, run here on /infer's boxes, with the block's defaults mapped as documented."""
    tracker = ByteTrackTracker(lost_track_buffer=30, frame_rate=10.0, track_activation_threshold=0.25,
                               high_conf_det_threshold=0.25, minimum_iou_threshold=0.2, minimum_consecutive_frames=1)
    tracks = []
    for frame in video:
        predictions = infer(http, "object_detection", "shapes-detect/1", frame, confidence=0.5)["predictions"]
        xyxy = np.array([[p["x"] - p["width"] / 2, p["y"] - p["height"] / 2, p["x"] + p["width"] / 2,
                          p["y"] + p["height"] / 2] for p in predictions], np.float32).reshape(-1, 4)  # fmt: skip
        detections = sv.Detections(xyxy=xyxy, confidence=np.array([p["confidence"] for p in predictions], np.float32),
                                   class_id=np.array([p["class_id"] for p in predictions], int))  # fmt: skip
        tracked = tracker.update(detections)
        tracks.append(tracked[tracked.tracker_id >= 0])
    return tracks


def by_box(predictions: list[dict]) -> dict[tuple, int]:
    return {(round(p["x"] - p["width"] / 2), round(p["y"] - p["height"] / 2)): p["tracker_id"] for p in predictions}


def library_by_box(tracked: sv.Detections) -> dict[tuple, int]:
    return {(round(float(x1)), round(float(y1))): int(i) for (x1, y1, _, _), i in zip(tracked.xyxy, tracked.tracker_id)}


def test_tracker_ids_equal_the_trackers_library_and_v3_splits_new_from_seen(http: httpx.Client, video: list[bytes]):
    definition = spec([TRACKER], {"tracked": "$steps.track.tracked_detections", "new": "$steps.track.new_instances",
                                  "seen": "$steps.track.already_seen_instances"})  # fmt: skip
    video_id = f"cam-{uuid.uuid4()}"
    outputs = [run(http, definition, frame, metadata(video_id, i + 1)) for i, frame in enumerate(video)]
    expected = library_tracks(http, video)
    for number, (output, tracked) in enumerate(zip(outputs, expected)):
        # `trackers` gives a track its id on its second matched frame: the first frame has no tracked objects
        assert len(output["tracked"]["predictions"]) == len(tracked) == (0 if number == 0 else 4)
        assert by_box(output["tracked"]["predictions"]) == library_by_box(tracked)
    ids = [sorted(p["tracker_id"] for p in output["tracked"]["predictions"]) for output in outputs[1:]]
    assert ids == [[0, 1, 2, 3]] * (FRAMES - 1), "each shape keeps its id across frames"
    assert len(outputs[1]["new"]["predictions"]) == 4 and not outputs[1]["seen"]["predictions"]
    assert all(not o["new"]["predictions"] and len(o["seen"]["predictions"]) == 4 for o in outputs[2:])


def test_state_is_per_video(http: httpx.Client, video: list[bytes]) -> None:
    definition = spec([TRACKER], {"new": "$steps.track.new_instances"})
    first, second = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    for number, frame in enumerate(video[:3], start=1):
        new = run(http, definition, frame, metadata(first, number))["new"]["predictions"]
    assert not new, "the first video's shapes are already seen by its third frame"
    run(http, definition, video[1], metadata(second, 1))
    fresh = run(http, definition, video[2], metadata(second, 2))["new"]["predictions"]
    assert sorted(p["tracker_id"] for p in fresh) == [0, 1, 2, 3], "another video: its own tracker, ids from 0"


def test_line_counter_equals_supervision_line_zone_on_the_same_tracks(http: httpx.Client, video: list[bytes]):
    line = [[LINE_X, 0], [LINE_X, 320]]
    counter = {"type": "roboflow_core/line_counter@v2", "name": "line", "image": "$inputs.image",
               "detections": "$steps.track.tracked_detections", "line_segment": line}  # fmt: skip
    definition = spec([TRACKER, counter], {"in": "$steps.line.count_in", "out": "$steps.line.count_out",
                                           "crossed_in": "$steps.line.detections_in",
                                           "crossed_out": "$steps.line.detections_out"})  # fmt: skip
    video_id = f"line-{uuid.uuid4()}"
    outputs = [run(http, definition, frame, metadata(video_id, i + 1)) for i, frame in enumerate(video)]
    zone = sv.LineZone(sv.Point(LINE_X, 0), sv.Point(LINE_X, 320), triggering_anchors=(sv.Position.CENTER,))
    for output, tracked in zip(outputs, library_tracks(http, video)):
        crossed_in, crossed_out = zone.trigger(tracked)
        assert (output["in"], output["out"]) == (zone.in_count, zone.out_count)
        assert sorted(p["tracker_id"] for p in output["crossed_in"]["predictions"]) == sorted(
            tracked.tracker_id[crossed_in].tolist())
        assert sorted(p["tracker_id"] for p in output["crossed_out"]["predictions"]) == sorted(
            tracked.tracker_id[crossed_out].tolist())
    assert outputs[-1]["in"] + outputs[-1]["out"] == 2, "two shapes cross the line"


def expected_times(ids: np.ndarray, inside: np.ndarray, number: int, entered: dict[int, int], fps: float,
                   keep_outside: bool = False) -> dict[int, float]:  # fmt: skip
    """Seconds in the zone per tracker id at frame `number`, by frame arithmetic; `entered` carries across frames."""
    expected = {}
    for tracker_id, is_inside in zip(ids.tolist(), inside.tolist()):
        if is_inside:
            expected[tracker_id] = (number - entered.setdefault(tracker_id, number)) / fps
        else:
            entered.pop(tracker_id, None)
            if keep_outside:
                expected[tracker_id] = 0.0
    return expected


def test_time_in_zone_counts_seconds_by_frame_number_and_fps(http: httpx.Client, video: list[bytes]) -> None:
    timer = {"type": "roboflow_core/time_in_zone@v2", "name": "zone", "image": "$inputs.image",
             "detections": "$steps.track.tracked_detections", "zone": ZONE}  # fmt: skip
    definition = spec([TRACKER, timer], {"timed": "$steps.zone.timed_detections"})
    video_id = f"zone-{uuid.uuid4()}"
    outputs = [run(http, definition, frame, metadata(video_id, i + 1, fps=10.0)) for i, frame in enumerate(video)]
    entered: dict[int, int] = {}
    for number, (output, tracked) in enumerate(zip(outputs, library_tracks(http, video)), start=1):
        inside = sv.PolygonZone(np.array(ZONE), triggering_anchors=(sv.Position.CENTER,)).trigger(tracked)
        got = {p["tracker_id"]: p["time_in_zone"] for p in output["timed"]["predictions"]}
        assert got == pytest.approx(expected_times(tracked.tracker_id, inside, number, entered, 10.0))
    # a shape inside all along, tracked from frame 2 (its id comes on its second frame): frames 2..8 at 10 fps
    assert max(p["time_in_zone"] for p in outputs[-1]["timed"]["predictions"]) == pytest.approx(0.6)


def test_counting_untracked_detections_is_a_400_naming_the_step(http: httpx.Client, video: list[bytes]) -> None:
    counter = {"type": "roboflow_core/line_counter@v2", "name": "line", "image": "$inputs.image",
               "detections": "$steps.det.predictions", "line_segment": [[0, 0], [10, 10]]}  # fmt: skip
    body = {"specification": spec([counter], {"in": "$steps.line.count_in"}),
            "inputs": {"image": {"type": "base64", "value": b64(video[0])}, "meta": metadata("x", 1)}}  # fmt: skip
    response = http.post("/workflows/run", json=body)
    assert response.status_code == 400 and "line" in response.json()["message"]
    assert "byte tracker" in response.json()["message"]
    bad_zone = {"type": "roboflow_core/time_in_zone@v2", "name": "zone", "image": "$inputs.image",
                "detections": "$steps.track.tracked_detections", "zone": [[0, 0], [1, 1]]}  # fmt: skip
    body["specification"] = spec([TRACKER, bad_zone], {"t": "$steps.zone.timed_detections"})
    response = http.post("/workflows/run", json=body)
    assert response.status_code == 400 and "three points" in response.json()["message"]


def test_official_client_reads_tracker_ids(
    fixture_server: Server, http: httpx.Client, video: list[bytes], tmp_path: Path
) -> None:
    path = tmp_path / "frame.png"
    path.write_bytes(video[1])
    definition = spec([TRACKER], {"tracked": "$steps.track.tracked_detections"})
    video_id = f"sdk-{uuid.uuid4()}"
    run(http, definition, video[0], metadata(video_id, 1))  # the frame before, over plain HTTP
    meta = f'meta={{"video_identifier": "{video_id}", "frame_number": 2, "fps": 10}}'
    result = run_sdk(fixture_server, definition, [path], tmp_path, "--param", meta, "--detections", "tracked")
    (output,) = result["outputs"]
    assert sorted(p["tracker_id"] for p in output["tracked"]["predictions"]) == [0, 1, 2, 3]
    assert len(result["supervision"][0]["tracked"]["xyxy"]) == 4
