"""The CPU provider against OpenVINO on this machine's CPU, raw forward passes per second, side by side:

    python -m benchmarks.providers [--seconds 2] [--repeats 2]

Three models: nudenet's YOLOv8n at 320 and at 640 (one dynamic-shape ONNX), and the RF-DETR Nano fixture (when
VISIONSERVE_RFDETR_FIXTURES names the cache). Each provider runs as the server runs a model under load: as many
one-thread passes side by side as there are cores (the thread plan), plus one pass over every core (a lone
request). Blocks alternate A-B-B-A, `--repeats` times, so a shared machine's drift weighs on both alike; the table
gives medians and the spread (min-max). Skipped with a note when this onnxruntime build has no OpenVINO.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from visionserve.models.builtin import BuiltinModels
from visionserve.runtime.onnx_model import ProviderSpec, open_session, openvino_options
from visionserve.runtime.providers import CPU, OPENVINO
from visionserve.runtime.threads import available_cores

console = Console(width=130)


@dataclass(frozen=True)
class Fixture:
    name: str
    path: Path
    side: int


def fixtures() -> list[Fixture]:
    nudenet = BuiltinModels().find("nudenet/1")
    assert nudenet is not None and nudenet.weights_path is not None
    found = [Fixture("YOLOv8n 320", nudenet.weights_path, 320), Fixture("YOLOv8n 640", nudenet.weights_path, 640)]
    folder = os.environ.get("VISIONSERVE_RFDETR_FIXTURES")
    if folder:
        found.append(Fixture("RF-DETR Nano 384", Path(folder) / "rfdetr-nano-detect.onnx", 384))
    return found


def _specs(provider: str, threads: int) -> list[ProviderSpec]:
    return [(OPENVINO, openvino_options(threads)), CPU] if provider == OPENVINO else [CPU]


def passes_per_second(fixture: Fixture, provider: str, runs: int, threads: int, seconds: float) -> float:
    """`runs` sessions of `threads` threads each, each busy in its own thread for `seconds`."""
    sessions = [open_session(fixture.path, _specs(provider, threads), threads, spinning=True) for _ in range(runs)]
    name = sessions[0].get_inputs()[0].name
    tensor = np.random.default_rng(0).random((1, 3, fixture.side, fixture.side), dtype=np.float32)
    for session in sessions:
        session.run(None, {name: tensor})  # warm-up (OpenVINO compiles the shape on its first pass)
    counts = [0] * runs
    stop = time.perf_counter() + seconds

    def loop(index: int) -> None:
        while time.perf_counter() < stop:
            sessions[index].run(None, {name: tensor})
            counts[index] += 1

    workers = [threading.Thread(target=loop, args=(index,)) for index in range(runs)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def compare(fixture: Fixture, runs: int, threads: int, seconds: float, repeats: int) -> dict[str, list[float]]:
    """Rates of each provider in A-B-B-A blocks."""
    rates: dict[str, list[float]] = {CPU: [], OPENVINO: []}
    for _ in range(repeats):
        for provider in (CPU, OPENVINO, OPENVINO, CPU):
            rates[provider].append(passes_per_second(fixture, provider, runs, threads, seconds))
    return rates


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def provider_table(seconds: float, repeats: int) -> Table | None:
    """The comparison as one table, or None (with a note) when OpenVINO is not in this onnxruntime build."""
    if OPENVINO not in ort.get_available_providers():
        console.print("[yellow]providers: OpenVINO not measured, this onnxruntime build has no OpenVINO provider "
                      "(pip install 'visionserve\\[openvino]', see the README)[/yellow]")  # fmt: skip
        return None
    cores = available_cores()
    table = Table("model", "passes", "CPU provider /s", "OpenVINO /s", "OpenVINO / CPU",
                  title=f"execution providers, raw passes/s, median (min-max) of {2 * repeats} A-B-B-A blocks")
    for fixture in fixtures():
        for runs, threads in ((cores, 1), (1, cores)):
            rates = compare(fixture, runs, threads, seconds, repeats)
            ratio = statistics.median(rates[OPENVINO]) / statistics.median(rates[CPU])
            table.add_row(fixture.name, f"{runs} x {threads} thr", _spread(rates[CPU]), _spread(rates[OPENVINO]),
                          f"{ratio:.2f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each block")
    parser.add_argument("--repeats", type=int, default=2, help="A-B-B-A sequences per configuration")
    args = parser.parse_args()
    console.print(f"onnxruntime {ort.__version__}, {available_cores()} cores")
    table = provider_table(args.seconds, args.repeats)
    if table is not None:
        console.print(table)


if __name__ == "__main__":
    main()
