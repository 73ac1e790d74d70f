"""Stream pipelines from our own clients: the SDK's pipeline calls against a real server, the in-process
`InferencePipeline` (no server), and `visionserve stream` in a terminal (progress line, outputs, Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from tests.conftest import Server, fixture_models_home
from tests.test_stream_pipelines import FRAMES, decoded_frames, make_video
from tests.test_workflow_tracking import expected_times
from tests.test_workflows import DETECT
from visionserve.config import Settings
from visionserve.sdk import InferenceHTTPClient, InferencePipeline

VISIONSERVE = Path(sys.executable).parent / "visionserve"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_models_home(tmp_path_factory.mktemp("clients-home"))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clients-media") / "moving.mp4"
    make_video(path)
    return path


def test_sdk_pipeline_calls(tmp_path: Path, home: Path, video: Path) -> None:
    server = Server(home, {"VISIONSERVE_STREAM_FILE_ROOTS": str(video.parent)}).start()
    try:
        with InferenceHTTPClient(server.url) as client:
            started = client.start_inference_pipeline("shapes-detect/1", str(video), track=True, confidence=0.5)
            pipeline_id = started["context"]["pipeline_id"]
            assert pipeline_id in client.list_inference_pipelines()["pipelines"]
            results, deadline = [], time.monotonic() + 60
            while len(results) < FRAMES and time.monotonic() < deadline:
                answer = client.consume_inference_pipeline_result(pipeline_id, max_results=5)
                results += answer["results"]
                time.sleep(0.05)
            assert [r["frames_metadata"][0]["frame_id"] for r in results] == list(range(1, FRAMES + 1))
            assert all("tracker_id" in p for r in results[1:] for p in r["outputs"][0]["predictions"])
            status = client.get_inference_pipeline_status(pipeline_id)
            assert status["report"]["sources"][0]["frames_inferred"] == FRAMES
            assert client.terminate_inference_pipeline(pipeline_id)["status"] == "success"
            assert pipeline_id not in client.list_inference_pipelines()["pipelines"]
    finally:
        server.stop()


def test_in_process_pipeline_calls_on_prediction_for_every_frame(home: Path, video: Path) -> None:
    seen = []
    pipeline = InferencePipeline.init(video_reference=str(video), model_id="shapes-detect/1", confidence=0.5,
                                      on_prediction=lambda predictions, frame: seen.append((predictions, frame)),
                                      settings=Settings(home=home))  # fmt: skip
    pipeline.start()  # on this thread, until the file ends
    assert [frame.frame_id for _, frame in seen] == list(range(1, FRAMES + 1))
    assert all(len(predictions["predictions"]) == 4 for predictions, _ in seen)
    assert all((frame.image == pixels).all() for (_, frame), pixels in zip(seen, decoded_frames(video)))


def test_in_process_pipeline_takes_frames_the_caller_pushes(home: Path) -> None:
    image = cv2.imread(str(DETECT[0]))
    frames = iter([image] * 3)
    seen = []
    pipeline = InferencePipeline.init(video_reference=lambda: next(frames, None), model_id="shapes-detect/1",
                                      on_prediction=lambda predictions, frame: seen.append(predictions),
                                      settings=Settings(home=home))  # fmt: skip
    pipeline.start()
    assert seen and all(len(predictions["predictions"]) == 4 for predictions in seen)


def _cli(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "COLUMNS": "200"}
    # Ctrl-C as in a terminal, even when the tests run in the background (where the shell ignores SIGINT)
    return subprocess.Popen([str(VISIONSERVE), "stream", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip


def test_cli_streams_a_file_to_jsonl_and_video(home: Path, video: Path, tmp_path: Path) -> None:
    jsonl, annotated = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    process = _cli(home, str(video), "--model", "shapes-detect/1", "--track", "--jsonl", str(jsonl),
                   "--output", str(annotated))  # fmt: skip
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert f"frames {FRAMES:>6}" in stderr and "fps" in stderr and "ended" in stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame_id"] for line in lines] == list(range(1, FRAMES + 1))
    assert annotated.stat().st_size > 0


def _wait_for_progress(process: subprocess.Popen, timeout: float = 60.0) -> str:
    """What the CLI wrote to stderr until its first progress line with a frame inferred."""
    assert process.stderr is not None
    descriptor = process.stderr.fileno()
    os.set_blocking(descriptor, False)
    seen, deadline = b"", time.monotonic() + timeout
    while b"fps" not in seen:
        assert time.monotonic() < deadline and process.poll() is None, seen
        try:
            seen += os.read(descriptor, 65536)
        except BlockingIOError:
            time.sleep(0.1)
    os.set_blocking(descriptor, True)
    return seen.decode()


def test_cli_ends_cleanly_on_ctrl_c(home: Path, video: Path) -> None:
    process = _cli(home, str(video), "--model", "shapes-detect/1", "--max-fps", "1")  # 12 s of video
    before = _wait_for_progress(process)  # the model has loaded and frames go by (however busy the machine is)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    stderr = before + stderr
    assert process.returncode == 0, stderr
    assert "stopping" in stderr and "Traceback" not in stderr and "ended" not in stderr.split("stopping")[0]


def test_cli_unknown_model_is_one_clear_line(home: Path, video: Path) -> None:
    process = _cli(home, str(video), "--model", "shapes-detec/1")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1 and "error:" in stderr and "shapes-detect/1" in stderr
    assert "Traceback" not in stderr


def test_in_process_sort_tracking_with_a_line_and_a_zone_equals_the_libraries(home: Path, video: Path) -> None:
    """SORT ids, line crossings and times in zone, against `trackers` and supervision run here on the same frames'
    untracked predictions."""
    import numpy as np
    import supervision as sv
    from trackers import SORTTracker

    line, zone = [[150, 0], [150, 320]], [[140, 0], [320, 0], [320, 320], [140, 320]]
    plain: list[dict] = []
    InferencePipeline.init(str(video), "shapes-detect/1", confidence=0.5, settings=Settings(home=home),
                           on_prediction=lambda output, frame: plain.append(output)).start()  # fmt: skip
    counted: list[dict] = []
    InferencePipeline.init(str(video), "shapes-detect/1", confidence=0.5, track=True, tracker="sort", line=line,
                           zone=zone, settings=Settings(home=home),
                           on_prediction=lambda output, frame: counted.append(output)).start()  # fmt: skip
    tracker = SORTTracker(frame_rate=10.0)
    crossing = sv.LineZone(sv.Point(150, 0), sv.Point(150, 320), triggering_anchors=(sv.Position.CENTER,))
    inside_zone = sv.PolygonZone(np.array(zone), triggering_anchors=(sv.Position.CENTER,))
    entered: dict[int, int] = {}
    for number, (untracked, output) in enumerate(zip(plain, counted), start=1):
        p = untracked["predictions"]
        detections = sv.Detections(
            xyxy=np.array([[q["x"] - q["width"] / 2, q["y"] - q["height"] / 2, q["x"] + q["width"] / 2,
                            q["y"] + q["height"] / 2] for q in p], np.float32).reshape(-1, 4),
            confidence=np.array([q["confidence"] for q in p], np.float32),
            class_id=np.array([q["class_id"] for q in p], int))  # fmt: skip
        tracked = tracker.update(detections)
        tracked = tracked[tracked.tracker_id >= 0]
        assert sorted(q["tracker_id"] for q in output["predictions"]) == sorted(tracked.tracker_id.tolist())
        if len(tracked):
            crossing.trigger(tracked)
        assert output["line_counts"] == {"in": crossing.in_count, "out": crossing.out_count}
        inside = inside_zone.trigger(tracked) if len(tracked) else np.zeros(0, bool)
        expected = expected_times(tracked.tracker_id, inside, number, entered, 10.0, keep_outside=True)
        assert {q["tracker_id"]: q["time_in_zone"] for q in output["predictions"]} == pytest.approx(expected)
    assert counted[-1]["line_counts"]["in"] + counted[-1]["line_counts"]["out"] == 2, "two shapes cross the line"
    assert max(q["time_in_zone"] for q in counted[-1]["predictions"]) > 0


def test_cli_counts_a_line_with_the_tracker_asked_for(home: Path, video: Path, tmp_path: Path) -> None:
    jsonl = tmp_path / "counts.jsonl"
    process = _cli(home, str(video), "--model", "shapes-detect/1", "--track", "--tracker", "ocsort",
                   "--line", "150,0,150,320", "--jsonl", str(jsonl))  # fmt: skip
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    counts = [json.loads(line)["output"]["line_counts"] for line in jsonl.read_text().splitlines()]
    assert len(counts) == FRAMES and counts[-1]["in"] + counts[-1]["out"] > 0
    untracked = _cli(home, str(video), "--model", "shapes-detect/1", "--line", "150,0,150,320")
    _, stderr = untracked.communicate(timeout=60)
    assert untracked.returncode == 1 and "set track to true" in stderr and "Traceback" not in stderr
    odd = _cli(home, str(video), "--model", "shapes-detect/1", "--track", "--zone", "1,2,3")
    _, stderr = odd.communicate(timeout=60)
    assert odd.returncode == 1 and "pairs of coordinates" in stderr
