"""`visionserve stream`: a model on a video file, camera or stream URL, in this process (no server), with a live
progress line, optional tracking and outputs; Ctrl-C stops it cleanly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from visionserve.cli.common import OFF, Shown, errors, fail
from visionserve.errors import VisionServeError

PROGRESS_EVERY_S = 0.5


def _reference(source: str) -> str | int:
    """A bare number is a camera index, as the reference takes it."""
    return int(source) if source.isdigit() else source


def _points(text: str | None, option: str) -> list[list[float]] | None:
    """"X1,Y1,X2,Y2,..." as [[x1, y1], [x2, y2], ...]."""
    if text is None:
        return None
    try:
        numbers = [float(part) for part in text.split(",")]
    except ValueError:
        raise fail(f"{option} takes numbers separated by commas (X1,Y1,X2,Y2,...), not {text!r}") from None
    if len(numbers) % 2:
        raise fail(f"{option} needs pairs of coordinates, got {len(numbers)} numbers")
    return [numbers[index : index + 2] for index in range(0, len(numbers), 2)]


def _progress(report: dict[str, Any], elapsed: float) -> str:
    sources = report["sources"]
    inferred = sum(item["frames_inferred"] for item in sources)
    dropped = sum(item.get("frames_dropped") or 0 for item in sources)
    fps = sum(item["fps"] or 0 for item in sources)
    latencies = [item["latency_p50_s"] for item in sources if item["latency_p50_s"] is not None]
    latency = f"{max(latencies) * 1000:.0f} ms" if latencies else "-"
    return (f"{report['state'].lower():<12} {elapsed:6.1f} s  frames {inferred:>6}  {fps:5.1f} fps  "
            f"latency p50 {latency:>7}  dropped {dropped}")  # fmt: skip


def stream(
    source: Annotated[str, typer.Argument(help="A video file, an rtsp:// / http(s):// stream URL, or a camera index.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The model to run on every frame.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write an annotated video (mp4) here.",
                                                default_factory=Shown("none"))],  # fmt: skip
    jsonl: Annotated[Path | None, typer.Option("--jsonl", help="Write one JSON line per frame here.",
                                               default_factory=Shown("none"))],  # fmt: skip
    track: Annotated[bool, typer.Option("--track", help="Track objects (see --tracker): tracker_id per box.",
                                        default_factory=OFF)],  # fmt: skip
    max_fps: Annotated[float | None, typer.Option("--max-fps", min=0.1, help="Infer at most this many frames a second.",
                                                  default_factory=Shown("no limit"))],  # fmt: skip
    confidence: Annotated[float | None, typer.Option("--confidence", min=0.0, max=1.0, help="Lowest confidence kept.",
                                                     default_factory=Shown("the model's"))],  # fmt: skip
    tracker: Annotated[str, typer.Option("--tracker", help="The tracker --track runs: bytetrack, sort or ocsort.",
                                         default_factory=Shown("bytetrack", "bytetrack"))],  # fmt: skip
    line: Annotated[str | None, typer.Option("--line", help="Count tracked objects crossing X1,Y1,X2,Y2.",
                                             default_factory=Shown("none"))],  # fmt: skip
    zone: Annotated[str | None, typer.Option("--zone", help="Time tracked objects in the polygon X1,Y1,X2,Y2,...",
                                             default_factory=Shown("none"))],  # fmt: skip
) -> None:
    """Run a model on a video or stream and print a live progress line (state, frames, FPS, latency, dropped)."""
    from visionserve.streams.inprocess import InferencePipeline  # the server's parts: loaded only here

    outputs = {"video": str(output) if output else None, "jsonl": str(jsonl) if jsonl else None}
    try:
        pipeline = InferencePipeline.init(
            video_reference=_reference(source), model_id=model, max_fps=max_fps, confidence=confidence, track=track,
            tracker=tracker, line=_points(line, "--line"), zone=_points(zone, "--zone"), outputs=outputs,
        )  # fmt: skip
    except VisionServeError as error:
        raise fail(error.message) from None
    except ValidationError as error:
        raise fail("; ".join(problem["msg"] for problem in error.errors())) from None
    began = time.monotonic()
    pipeline.start(use_main_thread=False)
    try:
        while not pipeline.pipeline.finished:
            time.sleep(PROGRESS_EVERY_S)
            errors.print(_progress(pipeline.report(), time.monotonic() - began), end="\r", highlight=False)
        pipeline.join()
    except KeyboardInterrupt:
        errors.print("\nstopping…", highlight=False)
        pipeline.terminate()
    report = pipeline.report()
    errors.print(_progress(report, time.monotonic() - began), highlight=False)
    if report["state"] == "ERROR" or report["last_error"]:
        raise fail(report["last_error"] or "the pipeline failed")
