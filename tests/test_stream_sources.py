"""Stream frame sources against real parts: PyAV-encoded files, a GStreamer RTSP server, local MJPEG and HLS HTTP
servers, image folders and pushed frames; and the reference policy."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.streams_support.http_servers import folder_server, mjpeg_server
from tests.streams_support.video_maker import make_video, numbered_frame, read_number
from visionserve.streams.frames import SourceState, VideoFrame
from visionserve.streams.source_policy import SourceRefused, check_reference, printable_reference
from visionserve.streams.source_options import ConsumptionStrategy, FillingStrategy, SourceOptions
from visionserve.streams.sources import FrameSource, open_source

FRAMES = 64
RTSP_SCRIPT = Path(__file__).parent / "streams_support" / "rtsp_server.py"
RTSP_PACKAGES = "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly python3-gi"


def read_all(source: FrameSource, timeout: float = 20.0, pause_s: float = 0.0) -> list[VideoFrame]:
    """Every frame until the source ends (fails the test if that takes longer than `timeout`)."""
    frames: list[VideoFrame] = []
    deadline = time.monotonic() + timeout
    while not source.ended:
        assert time.monotonic() < deadline, f"the source did not end: {source.status()}"
        frame = source.read(timeout=0.5)
        if frame is not None:
            frames.append(frame)
            time.sleep(pause_s)
    return frames


def read_some(source: FrameSource, count: int, timeout: float = 10.0) -> list[VideoFrame]:
    frames: list[VideoFrame] = []
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        assert time.monotonic() < deadline, f"only {len(frames)} frames came: {source.status()}"
        frame = source.read(timeout=0.5)
        if frame is not None:
            frames.append(frame)
    return frames


def wait_for(condition, timeout: float, what: str) -> None:  # noqa: ANN001 - a zero-argument predicate
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_bgr(frame: VideoFrame, width: int = 160, height: int = 120) -> None:
    image = frame.image
    assert image.dtype == np.uint8 and image.shape == (height, width, 3) and image.flags.c_contiguous


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "h264-mp4": make_video(folder / "clip.mp4", FRAMES, "libx264"),
        "vp9-webm": make_video(folder / "clip.webm", FRAMES, "libvpx-vp9"),
        "short": make_video(folder / "short.mp4", 16, "libx264"),
    }


# -- files -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["h264-mp4", "vp9-webm"])
def test_file_gives_every_frame_in_order(videos: dict[str, Path], kind: str) -> None:
    source = open_source(str(videos[kind]), 3, SourceOptions(buffer_size=4))
    assert not source.is_live
    frames = read_all(source)
    assert [read_number(f.image) for f in frames] == list(range(FRAMES))
    assert [f.frame_id for f in frames] == list(range(1, FRAMES + 1))
    assert all(f.source_id == 3 and f.comes_from_video_file and f.fps == 25.0 for f in frames)
    assert_bgr(frames[0])
    gaps = {round((b.frame_timestamp - a.frame_timestamp).total_seconds(), 3) for a, b in zip(frames, frames[1:])}
    assert gaps == {0.04}  # from the stream's pts, not from when the frames were decoded
    props = source.properties
    assert (props.width, props.height, props.total_frames, props.is_file, props.fps) == (160, 120, FRAMES, True, 25.0)
    status = source.status()
    assert status["state"] == "ENDED" and status["frames_dropped"] == 0 and status["frames_read"] == FRAMES
    assert status["buffer_filling_strategy"] == "WAIT" and status["buffer_consumption_strategy"] == "LAZY"
    assert source.read(timeout=0.1) is None
    source.close()


@pytest.mark.parametrize(("options", "least_s"), [
    (SourceOptions(max_fps=40), 15 / 40),
    (SourceOptions(realtime_files=True, filling=FillingStrategy.WAIT, consumption=ConsumptionStrategy.LAZY), 15 / 25),
])  # fmt: skip
def test_file_pacing_waits_and_drops_nothing(videos: dict[str, Path], options: SourceOptions, least_s: float) -> None:
    start = time.monotonic()
    source = open_source(str(videos["short"]), 0, options)
    frames = read_all(source)
    took = time.monotonic() - start
    assert [read_number(f.image) for f in frames] == list(range(16))
    assert source.frames_dropped == 0
    assert least_s <= took < least_s + 3


def test_file_pause_waits_then_resumes(videos: dict[str, Path]) -> None:
    source = open_source(str(videos["h264-mp4"]), 0, SourceOptions(buffer_size=2))
    read_some(source, 1)
    source.pause()
    assert source.state is SourceState.PAUSED
    while source.read(timeout=0.2) is not None:  # what was buffered before the pause
        pass
    time.sleep(0.3)
    read_before = source.frames_read
    time.sleep(0.3)
    assert source.frames_read == read_before and source.read(timeout=0.1) is None
    source.resume()
    assert source.state is SourceState.RUNNING
    rest = read_all(source)
    assert rest and read_number(rest[-1].image) == FRAMES - 1 and source.frames_dropped == 0


def test_oversized_frame_is_an_error(videos: dict[str, Path]) -> None:
    source = open_source(str(videos["short"]), 0, SourceOptions(max_pixels=100))
    wait_for(lambda: source.state is SourceState.ERROR, 5, "ERROR")
    assert "160x120" in source.last_error and "100 pixels" in source.last_error
    assert source.ended and source.read(timeout=0.1) is None


def test_missing_camera_is_a_clear_error() -> None:
    source = open_source(7, 0, SourceOptions())
    wait_for(lambda: source.state is SourceState.ERROR, 5, "ERROR")
    assert source.is_live and source.last_error == "the camera /dev/video7 does not exist"
    source.close()


def test_folder_and_glob_of_images(tmp_path: Path) -> None:
    for number in range(5):
        cv2.imwrite(str(tmp_path / f"img_{number:02d}.png"), numbered_frame(number))
    (tmp_path / "notes.txt").write_text("not an image")
    cv2.imwrite(str(tmp_path / "grey.jpg"), np.zeros((120, 160), np.uint8))  # sorts first: a grey image, read as BGR
    for reference in (str(tmp_path), str(tmp_path / "img_*.png")):
        source = open_source(reference, 0, SourceOptions(buffer_size=2))
        frames = read_all(source)
        numbers = [read_number(f.image) for f in frames]
        assert numbers[-5:] == list(range(5)) and len(numbers) == (6 if reference == str(tmp_path) else 5)
        assert all(f.comes_from_video_file for f in frames) and not source.is_live
        assert_bgr(frames[0])
        assert source.properties.total_frames == len(numbers) and source.state is SourceState.ENDED


# -- live semantics with pushed frames ------------------------------------------------------------------------------


class Camera:
    """A callable live source: numbered frames at about `fps`, forever (or until `stop`)."""

    def __init__(self, fps: float = 300.0, frames: int | None = None) -> None:
        self.period, self.frames, self.count = 1.0 / fps, frames, 0

    def __call__(self) -> np.ndarray | None:
        if self.frames is not None and self.count >= self.frames:
            return None
        time.sleep(self.period)
        self.count += 1
        return numbered_frame(self.count % 256)


def test_live_slow_consumer_gets_newest_with_bounded_buffer() -> None:
    source = open_source(Camera(), 1, SourceOptions(buffer_size=4))
    assert source.is_live and source.status()["buffer_consumption_strategy"] == "EAGER"
    delivered: list[VideoFrame] = []
    lags: list[int] = []
    most_buffered = 0
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        for _ in range(5):
            most_buffered = max(most_buffered, source.buffered)
            time.sleep(0.01)
        frame = source.read(timeout=1.0)
        assert frame is not None
        lags.append(source.frames_read - frame.frame_id)  # 0 or 1 (one more may have arrived since): the newest
        delivered.append(frame)
    source.close()
    assert sorted(lags)[len(lags) * 4 // 5] <= 1
    assert most_buffered <= 4
    ids = [f.frame_id for f in delivered]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert any(b - a > 1 for a, b in zip(ids, ids[1:]))  # older frames were skipped: the newest was taken
    assert source.frames_dropped >= source.frames_read - len(delivered) - 4 > 0
    assert delivered[-1].measured_fps and delivered[-1].fps is None and not delivered[-1].comes_from_video_file
    assert source.state is SourceState.ENDED


def test_live_eager_waits_for_the_next_frame_when_the_newest_is_stale() -> None:
    """A consumer arriving at any phase of a 12.5 FPS camera gets a frame at most about half a period old: when the
    newest is older than that, the read waits for the next one (never much more than a period)."""
    period = 0.08
    source = open_source(Camera(fps=1 / period), 0, SourceOptions())
    read_some(source, 3)
    phases = np.random.default_rng(7).uniform(0, period, 40)
    ages, waits = [], []
    for phase in phases:
        time.sleep(period + phase)  # what an inference pass of any length does between reads
        asked = time.monotonic()
        frame = source.read(timeout=1.0)
        assert frame is not None
        now = time.monotonic()
        ages.append(now - frame.capture_monotonic)
        waits.append(now - asked)
    source.close()
    # without the wait, ages would spread evenly over the whole period: half of them over period / 2
    assert sorted(ages)[int(0.9 * len(ages))] <= period / 2 + 0.01, ages
    assert max(waits) <= 1.25 * period + 0.05, waits
    assert sum(wait > 0.005 for wait in waits) >= len(waits) // 4  # it did wait, about half the time


@pytest.mark.parametrize(("filling", "kept"), [
    (FillingStrategy.DROP_OLDEST, list(range(15, 20))),
    (FillingStrategy("ADAPTIVE_DROP_LATEST"), list(range(5))),
])  # fmt: skip
def test_live_filling_strategies(filling: FillingStrategy, kept: list[int]) -> None:
    frames = [numbered_frame(n) for n in range(20)]
    source = open_source(iter(frames), 0, SourceOptions(buffer_size=5, filling=filling,
                                                        consumption=ConsumptionStrategy.LAZY))  # fmt: skip
    wait_for(lambda: source.state is SourceState.ENDED, 5, "the pushed frames to be taken")
    assert [read_number(f.image) for f in read_all(source)] == kept
    assert source.frames_dropped == 15 and source.frames_read == 20


def test_live_max_fps_drops_above_it() -> None:
    source = open_source(Camera(fps=200), 0, SourceOptions(max_fps=20, consumption=ConsumptionStrategy.LAZY))
    delivered = 0
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        delivered += source.read(timeout=0.2) is not None
    source.close()
    assert 12 <= delivered <= 24
    assert source.frames_dropped >= source.frames_read - delivered - 1


def test_pushed_callable_and_iterable_frames() -> None:
    grey = np.full((120, 160), 200, np.uint8)
    source = open_source(Camera(fps=1000, frames=3), 0, SourceOptions(consumption=ConsumptionStrategy.LAZY,
                                                                       filling=FillingStrategy.WAIT))  # fmt: skip
    assert [read_number(f.image) for f in read_all(source)] == [1, 2, 3]
    assert source.state is SourceState.ENDED and source.properties.width == 160
    reused = numbered_frame(9)
    source = open_source([grey, reused], 0, SourceOptions(consumption=ConsumptionStrategy.LAZY))
    frames = read_all(source)
    reused[:] = 0  # the caller reusing its array does not change a frame already taken
    assert [f.image.shape for f in frames] == [(120, 160, 3)] * 2 and read_number(frames[1].image) == 9
    source = open_source([np.zeros((4, 4, 3), np.float32)], 0, SourceOptions())
    wait_for(lambda: source.state is SourceState.ERROR, 5, "ERROR")
    assert "uint8" in source.last_error


def test_live_pause_discards_and_resume_flows() -> None:
    source = open_source(Camera(fps=200), 0, SourceOptions())
    read_some(source, 1)
    source.pause()
    assert source.state is SourceState.PAUSED
    source.read(timeout=0.2)  # what was buffered before the pause
    time.sleep(0.2)
    read_while_paused = source.frames_read
    assert source.read(timeout=0.2) is None and source.frames_read > read_while_paused  # still connected, discarding
    source.resume()
    assert read_some(source, 2) and source.state is SourceState.RUNNING
    source.close()


# -- network sources ------------------------------------------------------------------------------------------------


def test_mjpeg_over_http() -> None:
    with mjpeg_server(fps=50) as url:
        source = open_source(url, 0, SourceOptions(consumption=ConsumptionStrategy.LAZY, filling=FillingStrategy.WAIT))
        assert source.is_live
        frames = read_some(source, 20)
        numbers = [read_number(f.image) for f in frames]
        assert numbers == list(range(numbers[0], numbers[0] + 20))
        assert_bgr(frames[0])
        assert source.state is SourceState.RUNNING and source.properties.total_frames is None
        source.close(timeout=2)
        assert source.state is SourceState.ENDED


def test_mjpeg_reconnects_when_the_stream_ends() -> None:
    with mjpeg_server(fps=100, frames=5) as url:
        source = open_source(url, 0, SourceOptions(consumption=ConsumptionStrategy.LAZY, reconnect_initial_s=0.05))
        read_some(source, 12)
        assert source.reconnects >= 2 and not source.ended
        source.close()


def test_hls_reads_every_frame(tmp_path: Path) -> None:
    make_video(tmp_path / "index.m3u8", FRAMES, container_format="hls",
               options={"hls_time": "1", "hls_list_size": "0", "hls_playlist_type": "vod"})  # fmt: skip
    with folder_server(tmp_path) as base:
        source = open_source(f"{base}/index.m3u8", 0, SourceOptions(buffer_size=4))
        assert not source.is_live
        frames = read_all(source, pause_s=0.003)  # a consumer slower than the decoder: still nothing dropped
    assert [read_number(f.image) for f in frames] == list(range(FRAMES))
    assert source.frames_dropped == 0 and source.properties.total_frames == FRAMES
    assert source.status()["buffer_filling_strategy"] == "WAIT"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rtsp_missing() -> str | None:
    if not Path("/usr/bin/python3").exists():
        return "/usr/bin/python3 is missing"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "missing = [e for e in ('x264enc', 'rtph264pay', 'videotestsrc') if not Gst.ElementFactory.find(e)]; "
             "print(' '.join(missing))")  # fmt: skip
    result = subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "gi cannot be imported"
    return f"GStreamer elements missing: {result.stdout.strip()}" if result.stdout.strip() else None


class RtspServer:
    """The RTSP server script as a subprocess; `transport` restricts it to "tcp" or "udp"."""

    def __init__(self, port: int, transport: str | None = None) -> None:
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}/test"
        self.args = [str(port)] + ([transport] if transport else [])
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> RtspServer:
        self.process = subprocess.Popen(["/usr/bin/python3", str(RTSP_SCRIPT), *self.args], stdout=subprocess.PIPE,
                                        text=True)  # fmt: skip
        ready = self.process.stdout.readline().strip()
        assert ready == "READY", f"the RTSP server did not start (exit {self.process.poll()})"
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="module")
def rtsp_available() -> None:
    missing = _rtsp_missing()
    if missing:
        message = f"RTSP tests need: apt-get install {RTSP_PACKAGES} ({missing})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def rtsp_server(rtsp_available: None) -> Iterator[Callable[[str | None], RtspServer]]:
    """Starts RTSP servers on free ports (restricted to a transport when asked); stops them after the test."""
    servers: list[RtspServer] = []

    def start(transport: str | None = None) -> RtspServer:
        servers.append(RtspServer(_free_port(), transport).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize(("transport", "suffix"), [("tcp", ""), ("udp", "?transport=udp")])
def test_rtsp_reads_frames_over_each_transport(rtsp_server: Callable[[str | None], RtspServer], transport: str,
                                               suffix: str) -> None:  # fmt: skip
    server = rtsp_server(transport)  # a server that offers only this transport
    source = open_source(server.url + suffix, 0, SourceOptions(open_timeout_s=5))
    assert source.is_live and source.state is SourceState.INITIALISING
    frames = read_some(source, 10)
    assert_bgr(frames[-1])
    assert source.state is SourceState.RUNNING and source.properties.width == 160 and source.properties.fps == 30
    assert source.reconnects == 0
    source.close()


def test_rtsp_uses_tcp_unless_told(rtsp_server: Callable[[str | None], RtspServer]) -> None:
    server = rtsp_server("udp")
    source = open_source(server.url, 0, SourceOptions(open_timeout_s=2, reconnect_initial_s=0.1))
    assert source.read(timeout=1.5) is None
    assert source.state is SourceState.RESTARTING and source.last_error and source.frames_read == 0
    source.close()


def test_rtsp_reconnects_after_the_server_returns(rtsp_server: Callable[[str | None], RtspServer]) -> None:
    server = rtsp_server(None)
    options = SourceOptions(open_timeout_s=2, reconnect_initial_s=0.1, reconnect_max_s=0.4)
    source = open_source(server.url, 0, options)
    try:
        read_some(source, 5)
        server.stop()
        wait_for(lambda: source.state is SourceState.RESTARTING, 10, "RESTARTING")
        wait_for(lambda: source.reconnects >= 2, 10, "reconnection attempts")
        assert source.last_error
        server.start()  # the same port
        wait_for(lambda: source.state is SourceState.RUNNING, 15, "RUNNING again")
        read_before = source.frames_read
        read_some(source, 5)
        assert source.frames_read > read_before
    finally:
        source.close()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("silent", [False, True])
def test_close_while_connecting_returns_in_time(silent_listener: int, silent: bool) -> None:
    port = silent_listener if silent else _free_port()
    source = open_source(f"rtsp://admin:secret@127.0.0.1:{port}/cam", 0, SourceOptions(open_timeout_s=5))
    assert source.reference == f"rtsp://***@127.0.0.1:{port}/cam"
    time.sleep(0.3)
    assert source.state is (SourceState.INITIALISING if silent else SourceState.RESTARTING)
    if not silent:
        assert "Connection refused" in source.last_error and "secret" not in source.last_error
    start = time.monotonic()
    source.close(timeout=1.0)
    assert time.monotonic() - start < 1.3
    assert source.state is SourceState.ENDED and source.ended and source.read(timeout=0.1) is None


# -- policy ---------------------------------------------------------------------------------------------------------


def refused(reference: object, allow: set[str] | None = None, roots: list[Path] | None = None) -> SourceRefused:
    with pytest.raises(SourceRefused) as caught:
        check_reference(reference, url_allow_hosts=allow or set(), file_roots=roots or [])
    return caught.value


def test_policy_network_urls() -> None:
    for url in ("rtsp://127.0.0.1:8554/cam", "http://localhost:8080/video.mjpg", "https://10.1.2.3/live.m3u8"):
        error = refused(url)
        assert error.status_code == 403 and "VISIONSERVE_URL_ALLOW_HOSTS" in error.message
    check_reference("rtsp://127.0.0.1:8554/cam", url_allow_hosts={"127.0.0.1"}, file_roots=[])
    check_reference("rtmp://localhost/live/key", url_allow_hosts={"localhost"}, file_roots=[])
    for bad in ("file:///etc/passwd", "concat:/a.mp4|/b.mp4", "pipe:0", "udp://1.2.3.4:5", "rtsp:///nohost"):
        assert refused(bad).status_code == 400
    assert refused("rtsp://no-such-host.invalid/cam").status_code == 400


def test_policy_local_paths(tmp_path: Path, videos: dict[str, Path]) -> None:
    video = videos["short"]
    error = refused(str(video))
    assert error.status_code == 403 and "VISIONSERVE_STREAM_FILE_ROOTS" in error.message
    assert refused(0).status_code == 403
    root = tmp_path / "root"
    root.mkdir()
    assert refused(str(video), roots=[root]).status_code == 403
    (root / "link.mp4").symlink_to(video)  # a link inside the root that leads out of it
    assert refused(str(root / "link.mp4"), roots=[root]).status_code == 403
    check_reference(str(video), url_allow_hosts=set(), file_roots=[video.parent])
    error = refused(str(root / "missing.mp4"), roots=[root])
    assert error.status_code == 400 and "missing.mp4" in error.message
    (root / "a.png").write_bytes(b"")
    check_reference(str(root / "*.png"), url_allow_hosts=set(), file_roots=[root])
    check_reference(str(root), url_allow_hosts=set(), file_roots=[root])
    assert refused(str(root / "*.jpg"), roots=[root]).status_code == 400
    assert refused(str(video.parent / "*.mp4"), roots=[root]).status_code == 403
    assert refused(7, roots=[Path("/dev")]).status_code == 400
    check_reference([np.zeros((2, 2, 3), np.uint8)], url_allow_hosts=set(), file_roots=[])


def test_printable_reference_masks_credentials() -> None:
    assert printable_reference("rtsp://u:p@cam.example:554/s?channel=1&password=x") == (
        "rtsp://***@cam.example:554/s?channel=1&password=***"
    )
    assert printable_reference("/videos/a.mp4") == "/videos/a.mp4"


def test_local_playlist_cannot_reach_the_network(tmp_path: Path) -> None:
    """The protocol whitelist: a local HLS playlist (allowed by the file roots) pointing at an HTTP segment would
    otherwise make the server fetch from any host."""
    served = tmp_path / "served"
    served.mkdir()
    make_video(served / "index.m3u8", 16, container_format="hls", options={"hls_playlist_type": "vod"})
    with folder_server(served) as base:
        playlist = tmp_path / "local.m3u8"
        playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{base}/index0.ts\n#EXT-X-ENDLIST\n")
        source = open_source(str(playlist), 0, SourceOptions())
        frames = read_all(source)
    assert frames == [] and source.state is SourceState.ERROR and source.frames_read == 0
