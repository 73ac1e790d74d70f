"""Server-side stream pipelines against a real server: a video file through a model (every frame, in order, each
equal to /infer on the same decoded frame), through a workflow with the official `inference-sdk` pipeline calls,
its live feed (SSE) and file outputs; and every refusal checked before anything starts."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import Server, b64, encode, fixture_models_home
from tests.test_official_sdk import SDK_PYTHON
from tests.test_workflows import DETECT, detector

FRAMES = 12
FPS = 10
BOX = ("x", "y", "width", "height")
SDK_SCRIPT = Path(__file__).parent / "official_sdk/run_pipeline.py"


def make_video(path: Path) -> None:
    """A 10 fps H.264 file of the detection test image moving right, 6 pixels a frame."""
    image = cv2.imread(str(DETECT[0]))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 320, "yuv420p"
        for i in range(FRAMES):
            moved = cv2.warpAffine(image, np.float32([[1, 0, 6 * i], [0, 1, 0]]), (320, 320),
                                   borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
            container.mux(stream.encode(av.VideoFrame.from_ndarray(moved, format="bgr24")))
        container.mux(stream.encode(None))


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    make_video(folder / "moving.mp4")
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, media: Path) -> Iterator[Server]:
    home = fixture_models_home(tmp_path_factory.mktemp("stream-home"))
    running = Server(home, {"VISIONSERVE_STREAM_FILE_ROOTS": str(media), "VISIONSERVE_URL_ALLOW_HOSTS": "127.0.0.1",
                            "VISIONSERVE_MAX_PIPELINES": "3"}).start()  # fmt: skip
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def consume_all(http: httpx.Client, pipeline_id: str, frames: int, timeout: float = 60) -> list[tuple[dict, dict]]:
    results, deadline = [], time.monotonic() + timeout
    while len(results) < frames and time.monotonic() < deadline:
        answer = http.get(f"/inference_pipelines/{pipeline_id}/consume").json()
        if not answer["outputs"]:
            time.sleep(0.05)
            continue
        results.append((answer["outputs"][0], answer["frames_metadata"][0]))
    return results


def test_a_file_through_a_model_every_frame_in_order_equal_to_infer(http: httpx.Client, media: Path) -> None:
    video = str(media / "moving.mp4")
    started = http.post("/inference_pipelines/initialise", json={"model_id": "shapes-detect/1",
                                                                 "video_reference": video, "confidence": 0.5})
    assert started.status_code == 200, started.text
    pipeline_id = started.json()["context"]["pipeline_id"]
    results = consume_all(http, pipeline_id, FRAMES)
    assert [meta["frame_id"] for _, meta in results] == list(range(1, FRAMES + 1)), "every frame, in order"
    for (output, meta), pixels in zip(results, decoded_frames(media / "moving.mp4")):
        body = {"model_id": "shapes-detect/1", "confidence": 0.5, "image": {"type": "base64",
                "value": b64(encode(pixels, ".png"))}}  # fmt: skip
        direct = http.post("/infer/object_detection", json=body).json()
        assert [p["class"] for p in output["predictions"]] == [p["class"] for p in direct["predictions"]]
        for got, expected in zip(output["predictions"], direct["predictions"]):
            assert [got[k] for k in BOX] == pytest.approx([expected[k] for k in BOX], abs=1e-3)
        assert meta["source_id"] == 0
    report = wait_for_state(http, pipeline_id, "ENDED")
    (source,) = report["sources"]
    assert source["frames_inferred"] == FRAMES and source["frames_dropped"] == 0
    assert source["source_properties"]["total_frames"] == FRAMES and report["results_waiting"] == 0
    assert source["latency_p50_s"] is not None and source["latency_p95_s"] >= source["latency_p50_s"]
    assert http.post(f"/inference_pipelines/{pipeline_id}/terminate").status_code == 200
    assert pipeline_id not in http.get("/inference_pipelines/list").json()["pipelines"]


def wait_for_state(http: httpx.Client, pipeline_id: str, state: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        report = http.get(f"/inference_pipelines/{pipeline_id}/status").json()["report"]
        if report["state"] == state or time.monotonic() > deadline:
            assert report["state"] == state, report
            return report
        time.sleep(0.1)


def test_official_client_runs_a_tracking_workflow_on_every_frame(server: Server, media: Path, tmp_path: Path):
    tracker = {"type": "roboflow_core/byte_tracker@v3", "name": "track", "image": "$inputs.image",
               "detections": "$steps.det.predictions"}  # fmt: skip
    spec = {"version": "1.0", "inputs": [{"type": "WorkflowImage", "name": "image"}],
            "steps": [detector(confidence=0.5), tracker],
            "outputs": [{"type": "JsonField", "name": "tracked", "selector": "$steps.track.tracked_detections"}]}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    command = [str(SDK_PYTHON), str(SDK_SCRIPT), "--url", server.url, "--spec", str(spec_path),
               "--video", str(media / "moving.mp4"), "--frames", str(FRAMES)]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=150)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    pipeline_id = result["started"]["context"]["pipeline_id"]
    assert result["started"]["status"] == "success" and pipeline_id in result["listed"]["pipelines"]
    assert result["paused"]["status"] == result["resumed"]["status"] == "success"
    # the client asks for DROP_OLDEST / EAGER (its defaults); a file still loses no frame here
    assert [r["meta"]["frame_id"] for r in result["results"]] == list(range(1, FRAMES + 1))
    assert not result["results"][0]["tracker_id"], "trackers gives ids from a track's second frame"
    assert all(sorted(r["tracker_id"]) == [0, 1, 2, 3] for r in result["results"][1:])
    assert result["status"]["report"]["sources"][0]["frames_inferred"] == FRAMES
    assert result["terminated"]["status"] == "success" and pipeline_id not in result["listed_after"]["pipelines"]


def test_live_feed_and_file_outputs(http: httpx.Client, media: Path) -> None:
    outputs = {"jsonl": str(media / "results.jsonl"), "video": str(media / "annotated.mp4")}
    started = http.post("/inference_pipelines/initialise", json={
        "model_id": "shapes-detect/1", "video_reference": str(media / "moving.mp4"), "max_fps": 20,
        "track": True, "outputs": outputs})  # fmt: skip
    assert started.status_code == 200, started.text
    pipeline_id = started.json()["context"]["pipeline_id"]
    events = []
    with http.stream("GET", f"/inference_pipelines/{pipeline_id}/events") as feed:
        assert feed.headers["content-type"].startswith("text/event-stream")
        for line in feed.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if "state" in events[-1]:
                    break
    assert events[-1] == {"state": "ENDED"} and len(events) > 1
    assert all(event["source_id"] == 0 and "predictions" in event["output"] for event in events[:-1])
    lines = [json.loads(line) for line in (media / "results.jsonl").read_text().splitlines()]
    assert [line["frame_id"] for line in lines] == list(range(1, FRAMES + 1))
    assert all("tracker_id" in p for line in lines[1:] for p in line["output"]["predictions"])
    with av.open(str(media / "annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
    http.post(f"/inference_pipelines/{pipeline_id}/terminate")


def test_refusals_come_before_anything_starts(http: httpx.Client, media: Path, tmp_path: Path) -> None:
    def refused(body: dict) -> httpx.Response:
        response = http.post("/inference_pipelines/initialise", json=body)
        assert response.status_code >= 400, response.text
        return response

    before = http.get("/inference_pipelines/list").json()["pipelines"]
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes((media / "moving.mp4").read_bytes())
    response = refused({"model_id": "shapes-detect/1", "video_reference": str(outside)})
    assert response.status_code == 403 and "VISIONSERVE_STREAM_FILE_ROOTS" in response.json()["message"]
    response = refused({"model_id": "shapes-detect/1", "video_reference": "rtsp://10.0.0.1/cam"})
    assert response.status_code == 403 and "VISIONSERVE_URL_ALLOW_HOSTS" in response.json()["message"]
    response = refused({"model_id": "shapes-detec/1", "video_reference": str(media / "moving.mp4")})
    assert response.status_code == 404 and "shapes-detect/1" in response.json()["message"]
    bad = {"version": "1.0", "inputs": [], "steps": [{"type": "nope", "name": "x"}], "outputs": []}
    response = refused({"video_configuration": {"type": "VideoConfiguration", "video_reference": "x.mp4"},
                        "processing_configuration": {"type": "WorkflowConfiguration", "workflow_specification": bad}})
    assert response.status_code in (400, 403)
    response = refused({"video_configuration": {"video_reference": str(media / "moving.mp4")},
                        "processing_configuration": {"workflow_specification": bad}})
    assert response.status_code == 400 and "nope" in response.json()["message"]
    response = refused({"video_reference": str(media / "moving.mp4")})
    assert response.status_code == 400 and response.json()["error_type"] == "invalid_payload"
    response = refused({"model_id": "shapes-detect/1", "video_reference": str(media / "moving.mp4"),
                        "line": [[0, 0], [1, 1]]})  # fmt: skip
    assert response.status_code == 400 and "set track to true" in response.json()["message"]
    response = refused({"model_id": "shapes-detect/1", "video_reference": str(media / "moving.mp4"),
                        "outputs": {"jsonl": str(tmp_path / "out.jsonl")}})  # fmt: skip
    assert response.status_code == 403
    assert http.get("/inference_pipelines/list").json()["pipelines"] == before
    assert http.get("/inference_pipelines/nope/status").status_code == 404


def test_terminate_while_connecting_and_the_pipeline_cap(http: httpx.Client) -> None:
    import socket

    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        reference = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam"
        ids = []
        for _ in range(3):
            started = http.post("/inference_pipelines/initialise",
                                json={"model_id": "shapes-detect/1", "video_reference": reference})
            assert started.status_code == 200, started.text
            ids.append(started.json()["context"]["pipeline_id"])
        over = http.post("/inference_pipelines/initialise", json={"model_id": "shapes-detect/1",
                                                                  "video_reference": reference})
        assert over.status_code == 429 and "VISIONSERVE_MAX_PIPELINES" in over.json()["message"]
        report = http.get(f"/inference_pipelines/{ids[0]}/status").json()["report"]
        assert report["state"] == "INITIALISING" and report["sources"][0]["source_reference"].startswith("rtsp://")
        for pipeline_id in ids:
            began = time.monotonic()
            assert http.post(f"/inference_pipelines/{pipeline_id}/terminate").status_code == 200
            assert time.monotonic() - began < 8
    assert not set(ids) & set(http.get("/inference_pipelines/list").json()["pipelines"])


def test_every_pipeline_route_needs_the_key_when_keys_are_set(start_server) -> None:
    keyed = start_server({"VISIONSERVE_API_KEYS": "sesame"})
    with keyed.client() as http:
        for method, path in [("GET", "/inference_pipelines/list"), ("GET", "/inference_pipelines/x/status"),
                             ("GET", "/inference_pipelines/x/consume"), ("POST", "/inference_pipelines/x/terminate"),
                             ("POST", "/inference_pipelines/initialise")]:  # fmt: skip
            assert http.request(method, path, json={}).status_code == 401, path
        # the official client sends the key as a JSON body, GETs included
        assert http.request("GET", "/inference_pipelines/list", json={"api_key": "sesame"}).status_code == 200
        assert http.request("GET", "/inference_pipelines/x/status", json={"api_key": "sesame"}).status_code == 404
