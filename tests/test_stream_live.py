"""Live and broken sources through whole pipelines: a workflow slower than a 30 FPS RTSP camera keeps latency
bounded and counts drops; several sources share each batch; a source that is not a video ends in a clear ERROR;
terminating a pipeline leaves none of its threads behind."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import fixture_models_home
from tests.test_stream_pipelines import FRAMES, make_video
from tests.test_stream_sources import RtspServer, rtsp_available, rtsp_server  # noqa: F401 - fixtures
from tests.test_workflows import detector
from visionserve.config import Settings
from visionserve.runtime.parallel import cpu_map
from visionserve.sdk import InferencePipeline

# A deliberately slow definition: the detector on every 40x40 slice of the camera's 160x120 frames (about 20 passes)
SLOW = {"version": "1.0", "inputs": [{"type": "WorkflowImage", "name": "image"}],
        "steps": [{"type": "roboflow_core/image_slicer@v2", "name": "slices", "image": "$inputs.image",
                   "slice_width": 40, "slice_height": 40, "overlap_ratio_width": 0.0, "overlap_ratio_height": 0.0},
                  {**detector(), "images": "$steps.slices.slices"},
                  {"type": "roboflow_core/detections_stitch@v1", "name": "stitch", "reference_image": "$inputs.image",
                   "predictions": "$steps.det.predictions"}],
        "outputs": [{"type": "JsonField", "name": "boxes", "selector": "$steps.stitch.predictions"}]}  # fmt: skip


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=fixture_models_home(tmp_path_factory.mktemp("live-home")))


def _sockets() -> int:
    """Sockets this process holds open."""
    return sum(os.readlink(f"/proc/self/fd/{fd}").startswith("socket:") for fd in _fds())


def _fds() -> list[str]:
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{fd}")
            names.append(fd)
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            pass
    return names


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_slow_workflow_on_a_live_camera_keeps_latency_bounded(rtsp_server, settings: Settings) -> None:  # noqa: F811
    camera: RtspServer = rtsp_server(None)
    cpu_map(abs, [1, 2, 3, 4])  # the process's shared decode pool (not a pipeline's) is up before the count
    before = {thread.ident for thread in threading.enumerate()}
    sockets_before = _sockets()
    seen: list[dict] = []
    pipeline = InferencePipeline.init_with_workflow(camera.url, workflow_specification=SLOW, settings=settings,
                                                    on_prediction=lambda output, frame: seen.append(output))
    pipeline.start(use_main_thread=False)
    wait_until(lambda: len(seen) >= 20, 60)
    (source,) = pipeline.report()["sources"]
    assert _sockets() > sockets_before, "the camera's RTSP connection is open while it runs"
    pipeline.terminate()
    per_frame = 1 / source["fps"]
    assert source["frames_dropped"] > 0, "the workflow is slower than the camera: frames must be dropped"
    assert source["frames_read"] > source["frames_inferred"]
    # the newest frame is always taken, so a result is about one processing time old, never a growing queue
    assert source["latency_p95_s"] < 3 * per_frame + 0.2, (source, per_frame)
    wait_until(lambda: not [t.name for t in threading.enumerate() if t.ident not in before], 10)
    wait_until(lambda: _sockets() <= sockets_before, 10)  # the camera's connection is closed too


def test_several_sources_share_each_batch(tmp_path: Path, settings: Settings) -> None:
    video = tmp_path / "moving.mp4"
    make_video(video)
    batches: list[tuple[list, list]] = []
    pipeline = InferencePipeline.init([str(video), str(video)], "shapes-detect/1", settings=settings,
                                      on_prediction=lambda outputs, frames: batches.append((outputs, frames)))
    pipeline.start()
    assert len(batches) == FRAMES, "one batch per instant: each holds a frame of both files"
    for number, (outputs, frames) in enumerate(batches, start=1):
        assert [frame.source_id for frame in frames] == [0, 1] and {f.frame_id for f in frames} == {number}
        same = [[{k: v for k, v in p.items() if k != "detection_id"} for p in o["predictions"]] for o in outputs]
        assert same[0] == same[1] and len(same[0]) == 4


def test_a_file_that_is_not_a_video_ends_in_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video at all")
    pipeline = InferencePipeline.init(str(bogus), "shapes-detect/1", settings=settings)
    pipeline.start(use_main_thread=False)
    wait_until(lambda: pipeline.report()["sources"][0]["state"] == "ERROR", 20)
    source = pipeline.report()["sources"][0]
    assert "notes.mp4" in source["last_error"] or "Invalid data" in source["last_error"], source
    wait_until(lambda: pipeline.pipeline.finished, 10)
    pipeline.terminate()
