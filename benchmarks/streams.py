"""Streams: in-process pipelines (`InferencePipeline`) on nudenet's YOLOv8n, against the raw forward pass on the
same cores, and the decoder the sources use against OpenCV's.

    python -m benchmarks.streams [--seconds 4] [--frames 10000]     (also part of `make bench`)

1. A 640x480 H.264 file, every frame, with 1, 2 and 4 sources (the same file several times): frames per second
   over all sources vs the best raw configuration of `benchmarks.detection` (random tensor, no pre- or
   post-processing). Goal >= 0.85 each.
2. A live source pushed at 30 FPS: latency from capture to result, p50 <= forward + 15 ms and p95 <= 2 x forward
   + 15 ms, forward being one lone pass's p50 measured in the same run; dropped frames counted. At 320 the model
   keeps up with 30 FPS, so the same runs again at 640 (the same weights), which cannot, to make drops happen.
3. Decoding a 1080p H.264 file: process CPU per frame with PyAV as the sources decode (one codec thread, BGR
   arrays) vs OpenCV's FFmpeg backend (`cv2.VideoCapture`). Goal: PyAV <= 1.1x OpenCV.
4. Memory: the process's RSS after 500 frames vs after `--frames` frames of a pushed 320x240 source read every
   frame (each one inferred), cut after 170 s (the name then says how far it got). Goal < 5% growth.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.detect import load, test_photo
from benchmarks.detection import DETECTORS, RawForward, raw_configurations
from benchmarks.target import Target
from visionserve.api.state import settings_plan
from visionserve.config import Settings
from visionserve.loadtest import repeat
from visionserve.models.builtin import BuiltinModels
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore
from visionserve.runtime.threads import ThreadPlan, available_cores
from visionserve.streams import decoding
from visionserve.streams.frames import VideoFrame
from visionserve.streams.inprocess import InferencePipeline
from visionserve.streams.source_policy import parse_reference

console = Console(width=130)
MODEL, SLOW_MODEL = "nudenet/1", "nudenet-640/1"  # the built-in YOLOv8n at 320, and its weights run at 640
FILE_FRAMES = 300
LIVE_FPS = 30.0
WARMUP_FRAMES = 30  # results left out of rates and latencies: first passes, sources filling their buffers


def moving_photo(width: int, height: int, count: int) -> Iterator[np.ndarray]:
    """The detection photo, a quarter larger than the frame, seen through a window that sweeps across it."""
    photo = cv2.imdecode(np.frombuffer(test_photo(width * 5 // 4, height * 5 // 4), np.uint8), cv2.IMREAD_COLOR)
    spare_x, spare_y = photo.shape[1] - width, photo.shape[0] - height
    for index in range(count):
        phase = 0.5 - 0.5 * np.cos(2 * np.pi * index / 150)  # there and back every 5 s at 30 FPS
        x, y = round(spare_x * phase), round(spare_y * (1 - phase))
        yield photo[y : y + height, x : x + width]


def write_video(path: Path, width: int, height: int, count: int) -> Path:
    """An H.264 (yuv420p, 30 FPS) MP4 of the moving photo, encoded with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 30)
        for image in moving_photo(width, height, count):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode(None))
    return path


class Results:
    """What `on_prediction` sees: frames per result (a batch of N frames counts N) and capture-to-result latencies,
    with the first `skip` results left out."""

    def __init__(self, skip: int = WARMUP_FRAMES, on_frame: Callable[[int], None] | None = None) -> None:
        self.skip = skip
        self.frames = 0
        self.counted = 0
        self.first: float | None = None
        self.last = 0.0
        self.latencies: list[float] = []
        self.on_frame = on_frame

    def __call__(self, predictions: Any, frames: VideoFrame | list[VideoFrame | None]) -> None:
        now = time.monotonic()
        present = [frame for frame in (frames if isinstance(frames, list) else [frames]) if frame is not None]
        self.frames += len(present)
        if self.on_frame is not None:
            self.on_frame(self.frames)
        if self.frames <= self.skip:
            self.first = now
            return
        self.counted += len(present)
        self.last = now
        self.latencies += [now - frame.capture_monotonic for frame in present]

    @property
    def per_second(self) -> float:
        return self.counted / (self.last - self.first) if self.first is not None and self.last > self.first else 0.0

    def percentile_ms(self, q: float) -> float:
        return 1000 * float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


def run_pipeline(home: Path, references: list[Any], model_id: str, results: Results,
                 **options: Any) -> dict[str, Any]:  # fmt: skip
    """One in-process pipeline to its end; its final report."""
    pipeline = InferencePipeline.init(video_reference=references, model_id=model_id, on_prediction=results,
                                      settings=Settings(home=home, weights_api=""), **options)  # fmt: skip
    pipeline.start()
    return pipeline.report()


def best_raw(home: Path, plan: ThreadPlan, seconds: float) -> RawForward:
    return max(raw_configurations(home, MODEL, plan, seconds), key=lambda config: config.per_second)


def file_targets(home: Path, video: Path, plan: ThreadPlan, seconds: float) -> list[Target]:
    """Raw, pipeline, raw, pipeline, ... raw: each pipeline against the mean of the raw rates either side of it, so
    drift on a shared machine weighs on both alike."""
    targets = []
    before = best_raw(home, plan, seconds / 2)
    for sources in (1, 2, 4):
        results = Results()
        report = run_pipeline(home, [str(video)] * sources, MODEL, results)
        after = best_raw(home, plan, seconds / 2)
        dropped = sum(source["frames_dropped"] for source in report["sources"])
        assert results.frames == sources * FILE_FRAMES and dropped == 0, (results.frames, dropped, report)
        raw = (before.per_second + after.per_second) / 2
        ratio = results.per_second / raw
        targets.append(Target(f"stream, 640x480 H.264 file x {sources}, every frame: frames/s / best raw",
                              f"{results.per_second:.1f} / {raw:.1f} per s (raw {before.name}, {after.name})",
                              ratio, ">= 0.85", ratio >= 0.85))  # fmt: skip
        before = after
    return targets


def paced(frames: list[np.ndarray], fps: float, seconds: float) -> Callable[[], np.ndarray | None]:
    """A camera pushing `frames` round and round at `fps` for `seconds` (then None: the end)."""
    period, count = 1.0 / fps, round(fps * seconds)
    state = {"index": 0, "start": 0.0}

    def next_frame() -> np.ndarray | None:
        index = state["index"]
        if index >= count:
            return None
        if index == 0:
            state["start"] = time.monotonic()
        delay = state["start"] + index * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        state["index"] = index + 1
        return frames[int(index) % len(frames)]

    return next_frame


def lone_forward_ms(home: Path, model_id: str, plan: ThreadPlan, seconds: float) -> float:
    """p50 of one forward pass over every core, as a lone request runs it (random input)."""
    settings = Settings(intra_op_threads=plan.lone_threads, concurrent_runs=1, lone_request_threads=plan.lone_threads)
    model = load(home, model_id, settings)
    tensor = np.random.default_rng(0).random((1, 3, *model.predictor.input_hw), dtype=np.float32)
    return repeat(lambda: model.predictor.runner.run(tensor), seconds).percentile_ms(50)


def live_targets(home: Path, plan: ThreadPlan, seconds: float) -> list[Target]:
    frames = list(moving_photo(640, 480, 150))
    targets = []
    for model_id in (MODEL, SLOW_MODEL):
        forward_before = lone_forward_ms(home, model_id, plan, seconds / 4)
        results = Results(skip=round(LIVE_FPS))  # the first second
        report = run_pipeline(home, [paced(frames, LIVE_FPS, seconds + 1)], model_id, results)
        forward = (forward_before + lone_forward_ms(home, model_id, plan, seconds / 4)) / 2  # either side of it
        (source,) = report["sources"]
        p50, p95 = results.percentile_ms(50), results.percentile_ms(95)
        side = DETECTORS[model_id]
        measured = (f"p50 {p50:.1f} / p95 {p95:.1f} ms, forward {forward:.1f} ms; {source['frames_dropped']} of "
                    f"{source['frames_read']} dropped, {results.per_second:.1f} inferred/s")  # fmt: skip
        targets += [
            Target(f"stream, live 640x480 at 30 FPS, model at {side}: p50 latency - forward", measured,
                   p50 - forward, "<= +15 ms", p50 <= forward + 15),
            Target(f"stream, live 640x480 at 30 FPS, model at {side}: p95 latency vs 2 x forward + 15 ms",
                   f"{p95:.1f} vs {2 * forward + 15:.1f} ms", p95 / (2 * forward + 15), "<= 1.00",
                   p95 <= 2 * forward + 15),
        ]  # fmt: skip
    return targets


def pyav_decode(path: Path) -> int:
    """Every frame as the sources decode a file: `decoding.open_container` and `decoding.decoded_frames`."""
    spec = decoding.open_spec(parse_reference(str(path)), None)
    with decoding.open_container(spec, open_timeout=10, read_timeout=10, threads=1, live=False) as container:
        return sum(1 for _ in decoding.decoded_frames(container, 50_000_000, 1))


def opencv_decode(path: Path) -> int:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = 0
    try:
        while capture.read()[0]:
            count += 1
    finally:
        capture.release()
    return count


def decode_target(video: Path) -> Target:
    """CPU of the whole process (decoder threads included), in A-B-B-A order."""
    decoders = {"PyAV": pyav_decode, "OpenCV": opencv_decode}
    cpu: dict[str, list[float]] = {name: [] for name in decoders}
    for name in ("PyAV", "OpenCV", "OpenCV", "PyAV"):
        started = time.process_time()
        frames = decoders[name](video)
        cpu[name].append(1000 * (time.process_time() - started) / frames)
    pyav, opencv = (statistics.mean(cpu[name]) for name in decoders)
    return Target("stream decode, 1080p H.264: PyAV (as the sources) / OpenCV FFmpeg, CPU per frame",
                  f"{pyav:.2f} vs {opencv:.2f} ms", pyav / opencv, "<= 1.10", pyav <= 1.1 * opencv)


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def memory_target(home: Path, frames: int, budget_s: float = 170.0) -> Target:
    """RSS at the 500th result and at the last, the source ending after `frames` frames or `budget_s` seconds
    (a busy shared machine: the target's name says how many frames it reached)."""
    image = next(moving_photo(320, 240, 1))
    warmup = 500
    marks: dict[str, tuple[int, float]] = {}

    def mark(seen: int) -> None:
        marks["warm" if seen <= warmup else "last"] = (seen, rss_mib())

    def pushed() -> Iterator[np.ndarray]:
        deadline = time.monotonic() + budget_s
        for _ in range(frames):
            if time.monotonic() > deadline:
                return
            yield image

    results = Results(on_frame=mark)
    report = run_pipeline(home, [pushed()], MODEL, results, video_processing_mode="every_frame")
    (source,) = report["sources"]
    (_, before), (reached, after) = marks["warm"], marks["last"]
    growth = (after - before) / before
    cut = "" if reached == frames else f" (cut at {budget_s:.0f} s, of {frames})"
    return Target(f"stream RSS, 320x240 pushed, every frame: frame {warmup} -> {reached}{cut}",
                  f"{before:.0f} -> {after:.0f} MiB ({source['frames_dropped']} dropped, "
                  f"{results.per_second:.0f} frames/s)", growth, "< 5% growth", growth < 0.05)  # fmt: skip


def prepare_store(home: Path) -> None:
    """nudenet's weights at 640 (as `benchmarks.suite` imports them), for the live run that must drop frames."""
    store = ModelStore(home / "models")
    if store.find(SLOW_MODEL) is None:
        nudenet = BuiltinModels().find(MODEL)
        assert nudenet is not None
        side = DETECTORS[SLOW_MODEL]
        import_model(store, nudenet.weights_path, SLOW_MODEL, ManifestOverrides(input_size=(side, side)))


def stream_targets(home: Path, seconds: float, frames: int = 10_000) -> list[Target]:
    prepare_store(home)
    plan = settings_plan(Settings())
    with tempfile.TemporaryDirectory() as scratch:
        small = write_video(Path(scratch) / "640x480.mp4", 640, 480, FILE_FRAMES)
        large = write_video(Path(scratch) / "1920x1080.mp4", 1920, 1080, 120)
        targets = file_targets(home, small, plan, seconds)
        targets += live_targets(home, plan, seconds)
        targets.append(decode_target(large))
    targets.append(memory_target(home, frames))
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each raw and live measurement")
    parser.add_argument("--frames", type=int, default=10_000, help="frames for the memory-growth check")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        targets = stream_targets(Path(scratch), args.seconds, args.frames)
    table = Table("target", "measured", "ratio", "goal", "result", title=f"stream targets ({available_cores()} cores)")
    for target in targets:
        table.add_row(target.name, target.measured, f"{target.ratio:.2f}", target.goal,
                      "[green]PASS[/green]" if target.passed else "[red]MISS[/red]")
    console.print(table)
    console.print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
