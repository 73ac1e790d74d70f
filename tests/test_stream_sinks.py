"""Stream result sinks with real parts: files read back (JSON Lines, MP4 decoded by PyAV), a loopback HTTP receiver
for the webhooks, asyncio subscribers of the live feed fed from a plain thread, and the memory sink's consume
semantics (order, one batch per consume, drops counted, wait mode blocking until a consume or close)."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import av
import cv2
import numpy as np
import orjson
import pytest

from visionserve.images.annotate import PALETTE
from visionserve.streams.frames import FrameResult, VideoFrame
from visionserve.streams.sinks.base import Sink
from visionserve.streams.sinks.feed import LiveFeed, TooManySubscribers
from visionserve.streams.sinks.jsonl import JsonLinesSink
from visionserve.streams.sinks.memory import MemorySink
from visionserve.streams.sinks.video import AnnotatedVideoSink
from visionserve.streams.sinks.webhook import WebhookSink
from visionserve.webhooks import SinkRefused

GRAY = 128
BOX = {"x": 80.0, "y": 60.0, "width": 60.0, "height": 40.0, "class": "square", "class_id": 3, "confidence": 0.9}
PREDICTIONS = {"image": {"width": 160, "height": 120}, "predictions": [BOX]}


def result(frame_id: int, source_id: int = 0, size: tuple[int, int] = (160, 120),
           predictions: dict | None = PREDICTIONS) -> FrameResult:  # fmt: skip
    image = np.full((size[1], size[0], 3), GRAY, np.uint8)
    frame = VideoFrame(image=image, frame_id=frame_id, frame_timestamp=datetime(2024, 5, 1, 12, 0, frame_id % 60,
                       tzinfo=timezone.utc), capture_monotonic=time.monotonic(), source_id=source_id, fps=25.0,
                       measured_fps=None, comes_from_video_file=True)  # fmt: skip
    return FrameResult(frame, {"count": frame_id, "source": source_id}, predictions, latency_s=0.01 * frame_id)


def blocked(thread: threading.Thread) -> bool:
    thread.join(0.3)
    return thread.is_alive()


def test_every_sink_follows_the_protocol(tmp_path: Path) -> None:
    sinks = [MemorySink(), JsonLinesSink(tmp_path / "r.jsonl"), AnnotatedVideoSink(tmp_path / "v.mp4", None),
             LiveFeed()]  # fmt: skip
    for sink in sinks:
        assert isinstance(sink, Sink)
        sink.close()


# Memory sink


def test_memory_consume_pops_one_batch_oldest_first() -> None:
    sink = MemorySink(results_buffer_size=8)
    assert sink.consume() == ([], [])
    sink.put([result(1, 0), None])
    sink.put([result(2, 0), result(1, 1)])
    outputs, metadata = sink.consume()
    assert outputs == [{"count": 1, "source": 0}, None]
    assert metadata == [{"frame_timestamp": "2024-05-01T12:00:01+00:00", "frame_id": 1, "source_id": 0}, None]
    assert sink.status()["results_waiting"] == 1
    outputs, metadata = sink.consume()
    assert [m["frame_id"] for m in metadata] == [2, 1] and [m["source_id"] for m in metadata] == [0, 1]
    assert sink.consume() == ([], [])


def test_memory_drops_the_oldest_and_counts() -> None:
    sink = MemorySink(results_buffer_size=3)
    for frame_id in range(1, 6):
        sink.put([result(frame_id)])
    assert sink.status() == {"type": "memory", "results_waiting": 3, "results_dropped": 2,
                                  "results_buffer_size": 3, "wait_when_full": False, "closed": False}  # fmt: skip
    batches = sink.consume_many(2)
    assert [b[1][0]["frame_id"] for b in batches] == [3, 4]
    assert [b[1][0]["frame_id"] for b in sink.consume_many(10)] == [5]
    assert sink.consume_many(10) == []


def test_memory_wait_mode_blocks_until_consumed_or_closed() -> None:
    sink = MemorySink(results_buffer_size=2, wait_when_full=True)
    sink.put([result(1)])
    sink.put([result(2)])
    third = threading.Thread(target=sink.put, args=([result(3)],))
    third.start()
    assert blocked(third)
    assert sink.consume()[1][0]["frame_id"] == 1
    third.join(2)
    assert not third.is_alive()
    fourth = threading.Thread(target=sink.put, args=([result(4)],))
    fourth.start()
    assert blocked(fourth)
    sink.close()
    fourth.join(2)
    assert not fourth.is_alive()
    status = sink.status()
    assert status["results_dropped"] == 1 and status["results_waiting"] == 2 and status["closed"]
    assert [b[1][0]["frame_id"] for b in sink.consume_many(5)] == [2, 3]  # readable after the end


def test_memory_abort_releases_the_pipeline_and_stops_waiting() -> None:
    sink = MemorySink(results_buffer_size=1, wait_when_full=True)
    sink.put([result(1)])
    second = threading.Thread(target=sink.put, args=([result(2)],))
    second.start()
    assert blocked(second)
    sink.abort()
    second.join(2)
    assert not second.is_alive()
    sink.put([result(3)])  # no longer waits: forgets the oldest
    assert sink.status()["results_dropped"] == 2 and not sink.status()["wait_when_full"]
    assert sink.consume()[1][0]["frame_id"] == 3


# JSON Lines


def test_jsonl_writes_one_flushed_line_per_result(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    sink = JsonLinesSink(path)
    sink.put([result(1, 0), None, result(1, 2)])
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]  # before close: flushed per batch
    assert lines == [
        {"source_id": 0, "frame_id": 1, "frame_timestamp": "2024-05-01T12:00:01+00:00", "latency_s": 0.01,
         "output": {"count": 1, "source": 0}},
        {"source_id": 2, "frame_id": 1, "frame_timestamp": "2024-05-01T12:00:01+00:00", "latency_s": 0.01,
         "output": {"count": 1, "source": 2}},
    ]  # fmt: skip
    sink.put([result(2, 0)])
    sink.close()
    sink.put([result(3, 0)])  # after close: ignored, no error
    assert len(path.read_bytes().splitlines()) == 3
    assert sink.status() == {"type": "jsonl", "path": str(path), "lines_written": 3, "stopped": True, "error": None}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_jsonl_disk_full_stops_the_sink_without_raising() -> None:
    sink = JsonLinesSink("/dev/full")
    sink.put([result(1)])
    sink.put([result(2)])
    status = sink.status()
    assert status["stopped"] and status["lines_written"] == 0
    assert "No space left" in status["error"]
    sink.close()


# Annotated video


def read_video(path: Path) -> tuple[list[np.ndarray], str]:
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)], codec


def test_video_draws_the_boxes_where_they_are(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    sink = AnnotatedVideoSink(path, fps=None, stroke=2)
    for frame_id in range(1, 11):
        sink.put([result(frame_id, predictions=PREDICTIONS if frame_id <= 5 else None)])
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 5
    status = sink.status()
    assert status["frames_written"] == 10 and status["frames_dropped"] == 0 and status["error"] is None
    frames, codec = read_video(path)
    assert codec in ("h264", "mpeg4") and len(frames) == 10
    assert all(frame.shape == (120, 160, 3) for frame in frames)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == 25  # the source's declared rate
    edge = np.array(PALETTE[3], np.int16)
    for index, frame in enumerate(frames):
        left_edge = frame[45:75, 50:52].astype(np.int16)  # box from x=50..110, y=40..80
        inside, outside = frame[55:65, 70:90].astype(np.int16), frame[0:20, 0:20].astype(np.int16)
        assert np.abs(outside - GRAY).max() < 12 and np.abs(inside - GRAY).max() < 12
        if index < 5:
            assert np.abs(left_edge - edge).mean() < 40, "the box line is drawn in its class colour"
        else:
            assert np.abs(left_edge - GRAY).max() < 12, "no predictions: nothing drawn"


def test_video_one_file_per_source_resized_to_the_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "multi.mp4"
    sink = AnnotatedVideoSink(path, fps=10.0)
    sink.put([result(1, 0, size=(161, 121)), None])
    sink.put([result(2, 0, size=(320, 240)), result(1, 1, size=(96, 64), predictions=None)])
    sink.put([None, result(2, 1, size=(96, 64), predictions=None)])
    sink.close()
    second = tmp_path / "multi.source-1.mp4"
    assert sink.status()["paths"] == [str(path), str(second)]
    first_frames, _ = read_video(path)
    second_frames, _ = read_video(second)
    assert [f.shape for f in first_frames] == [(120, 160, 3)] * 2  # odd sizes rounded down to even
    assert [f.shape for f in second_frames] == [(64, 96, 3)] * 2
    with av.open(str(second)) as container:
        assert container.streams.video[0].average_rate == 10


def test_video_drops_frames_the_encoder_cannot_keep_up_with(tmp_path: Path) -> None:
    sink = AnnotatedVideoSink(tmp_path / "big.mp4", fps=30.0, queue_size=1)
    started = time.monotonic()
    for frame_id in range(1, 41):
        sink.put([result(frame_id, size=(1920, 1080))])
    put_s = time.monotonic() - started
    sink.close()
    status = sink.status()
    assert put_s < 1.0, "put never waits for the encoder"
    assert status["frames_dropped"] > 0 and status["frames_written"] + status["frames_dropped"] == 40
    frames, _ = read_video(tmp_path / "big.mp4")
    assert len(frames) == status["frames_written"]


def test_video_refuses_a_folder_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(PermissionError):
        AnnotatedVideoSink(tmp_path / "missing" / "out.mp4", fps=None)


# Webhook


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records every request; `/fail` answers 500, `/slow` waits 0.3 s, `/redirect` sends to `/hook`."""

    received: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((self.path, json.loads(body)))
        if self.path == "/slow":
            time.sleep(0.3)
        status = {"/fail": 500, "/redirect": 302}.get(self.path, 200)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/hook")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


ALLOW = frozenset({"127.0.0.1"})


def test_webhook_posts_each_frame(receiver: str) -> None:
    sink = WebhookSink(f"{receiver}/hook", per="frame", allow_hosts=ALLOW)
    sink.put([result(1, 0), None, result(1, 2)])
    sink.put([result(2, 0), None, None])
    sink.close()
    assert [path for path, _ in Receiver.received] == ["/hook"] * 3
    assert [(b["source_id"], b["frame_id"]) for _, b in Receiver.received] == [(0, 1), (2, 1), (0, 2)]
    assert Receiver.received[0][1] == {"source_id": 0, "frame_id": 1, "frame_timestamp": "2024-05-01T12:00:01+00:00",
                                       "latency_s": 0.01, "output": {"count": 1, "source": 0}}  # fmt: skip
    status = sink.status()
    assert status["sent"] == 3 and status["failed"] == 0 and status["dropped"] == 0
    assert status["host"] == receiver.removeprefix("http://")


def test_webhook_posts_each_batch(receiver: str) -> None:
    sink = WebhookSink(f"{receiver}/hook", per="batch", allow_hosts=ALLOW)
    sink.put([result(1, 0), None])
    sink.close()
    ((path, body),) = Receiver.received
    assert body["results"][1] is None and body["results"][0]["output"] == {"count": 1, "source": 0}


def test_webhook_refuses_loopback_unless_allowed(receiver: str) -> None:
    with pytest.raises(SinkRefused, match="not allowed"):
        WebhookSink(f"{receiver}/hook")
    with pytest.raises(SinkRefused):
        WebhookSink("file:///etc/passwd")


def test_webhook_counts_failures_and_follows_no_redirect(receiver: str) -> None:
    sink = WebhookSink(f"{receiver}/fail", allow_hosts=ALLOW)
    sink.put([result(1), result(2)])
    sink.close()
    assert sink.status()["failed"] == 2 and sink.status()["last_error"] == "the webhook answered HTTP 500."
    redirected = WebhookSink(f"{receiver}/redirect", allow_hosts=ALLOW)
    redirected.put([result(3)])
    redirected.close()
    assert [path for path, _ in Receiver.received] == ["/fail", "/fail", "/redirect"]


def test_webhook_drops_the_oldest_when_the_receiver_is_slow(receiver: str) -> None:
    sink = WebhookSink(f"{receiver}/slow", allow_hosts=ALLOW, max_queue=2)
    started = time.monotonic()
    for frame_id in range(1, 11):
        sink.put([result(frame_id)])
    assert time.monotonic() - started < 0.2, "put never waits for the receiver"
    sink.close()
    status = sink.status()
    assert status["dropped"] >= 6 and status["sent"] + status["dropped"] == 10
    assert [body["frame_id"] for _, body in Receiver.received][-2:] == [9, 10]  # the newest were kept


def test_webhook_failing_receiver_does_not_hold_close(tmp_path: Path) -> None:
    sink = WebhookSink("http://127.0.0.1:9/hook", allow_hosts=ALLOW, timeout_s=1)  # discard port: refused
    sink.put([result(i) for i in range(1, 6)])
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 5
    assert sink.status()["failed"] + sink.status()["dropped"] == 5 and sink.status()["sent"] == 0


# Live feed


def put_later(feed: LiveFeed, batches: list[list[FrameResult | None]], delay: float = 0.1) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        for batch in batches:
            feed.put(batch)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_feed_delivers_from_a_thread_to_asyncio_subscribers() -> None:
    async def scenario() -> None:
        feed = LiveFeed()
        plain, pictured = feed.subscribe(), feed.subscribe(images=True)
        thread = put_later(feed, [[result(1, 0, size=(1920, 1080)), None]])
        message = await plain.next(timeout=5)
        assert message == {"source_id": 0, "frame_id": 1, "frame_timestamp": "2024-05-01T12:00:01+00:00",
                           "latency_s": 0.01, "output": {"count": 1, "source": 0}}  # fmt: skip
        message = await pictured.next(timeout=5)
        image = cv2.imdecode(np.frombuffer(base64.b64decode(message["image"]), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (720, 1280, 3)
        # the box's left edge (x = 50 at 1920 wide) is drawn, at x = 33 once scaled by 2/3
        assert np.abs(image[35:45, 31:36].astype(int) - GRAY).max() > 40 and abs(int(image[5, 5, 0]) - GRAY) < 12
        thread.join()
        assert await plain.next(timeout=0.05) is None and not plain.ended
        assert feed.status()["subscribers"] == 2

    asyncio.run(scenario())


def test_feed_slow_subscriber_loses_its_oldest_only() -> None:
    async def scenario() -> None:
        feed = LiveFeed(queue_size=2)
        slow, fast = feed.subscribe(), feed.subscribe()
        received = []
        for frame_id in range(1, 6):
            feed.put([result(frame_id)])
            received.append((await fast.next(timeout=1))["frame_id"])
        assert received == [1, 2, 3, 4, 5] and fast.dropped == 0
        assert [(await slow.next(timeout=1))["frame_id"] for _ in range(2)] == [4, 5]
        assert slow.dropped == 3 and feed.status()["messages_dropped"] == 3

    asyncio.run(scenario())


def test_feed_limits_subscribers_and_close_ends_them() -> None:
    async def scenario() -> None:
        feed = LiveFeed(max_subscribers=2)
        first, second = feed.subscribe(), feed.subscribe()
        with pytest.raises(TooManySubscribers):
            feed.subscribe()
        first.close()
        assert await first.next(timeout=1) is None and first.ended
        third = feed.subscribe()
        feed.put([result(1)])
        waiting = asyncio.create_task(second.next(timeout=10))
        assert (await waiting)["frame_id"] == 1
        waiting = asyncio.create_task(second.next(timeout=10))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        threading.Thread(target=feed.close).start()
        assert await waiting is None and time.monotonic() - started < 1
        assert second.ended
        assert (await third.next(timeout=1))["frame_id"] == 1  # what was queued is still read
        assert await third.next(timeout=1) is None and third.ended
        late = feed.subscribe()
        assert late.ended and await late.next(timeout=1) is None

    asyncio.run(scenario())
