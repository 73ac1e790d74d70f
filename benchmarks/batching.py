"""Dynamic batching on this machine's provider: one server with passes merged across requests, one without, on
nudenet's YOLOv8n at 320 (one 640x480 JPEG per request), at 1, 4 and 16 clients, A-B-B-A at each count so drift on
a shared machine weighs on both alike.

    python -m benchmarks.batching [--seconds 4]     (also part of `make bench`)

It decides `VISIONSERVE_DYNAMIC_BATCHING=auto` for the CPU provider: on only if merged passes serve more at 16
clients without costing a lone client (1 client >= 0.97). The target passes when the default agrees with the run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from rich.console import Console

from benchmarks.detect import request_body, test_photo
from benchmarks.target import Target
from visionserve.loadtest import LoadResult, drive, load_generator
from visionserve.server_process import ServerProcess

console = Console(width=130)
CLIENTS = (1, 4, 16)
AUTO_ON_CPU = False  # what `auto` means on the CPU provider (visionserve.api.state.batching_choice)


def servers(home: Path) -> dict[str, ServerProcess]:
    base = {"VISIONSERVE_HOME": str(home), "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
    return {
        name: ServerProcess(home / f"server-batching-{name}.log",
                            env={**base, "VISIONSERVE_DYNAMIC_BATCHING": name}).start()  # fmt: skip
        for name in ("on", "off")
    }


def batching_targets(home: Path, seconds: float) -> list[Target]:
    body = request_body("nudenet/1", [test_photo(640, 480)])
    running = servers(home)
    results: dict[int, dict[str, list[LoadResult]]] = {}
    try:
        for clients in CLIENTS:
            results[clients] = {"on": [], "off": []}
            for name in ("on", "off", "off", "on"):
                results[clients][name].append(drive(running[name].url, "/infer/object_detection", body, clients,
                                                    seconds / 2, warmup_s=0.5))  # fmt: skip
    finally:
        for server in running.values():
            server.stop()
    targets, ratios = [], {}
    for clients, runs in results.items():
        rate = {name: sum(r.requests for r in loads) / sum(r.wall_s for r in loads) for name, loads in runs.items()}
        p50 = {name: statistics.median(r.p50_ms for r in loads) for name, loads in runs.items()}
        ratios[clients] = rate["on"] / rate["off"]
        measured = f"{rate['on']:.1f} vs {rate['off']:.1f} req/s, p50 {p50['on']:.1f} vs {p50['off']:.1f} ms"
        targets.append(Target(f"dynamic batching on / off, CPU, {clients} client(s) ({load_generator()})", measured,
                              ratios[clients], "(measured)", True))  # fmt: skip
    pays = ratios[max(CLIENTS)] > 1.0 and ratios[1] >= 0.97
    targets.append(Target("dynamic batching: `auto` on the CPU provider agrees with this run",
                          f"auto is {'on' if AUTO_ON_CPU else 'off'}; this run says {'on' if pays else 'off'}",
                          ratios[max(CLIENTS)], "agrees", pays == AUTO_ON_CPU))  # fmt: skip
    return targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for target in batching_targets(Path(scratch), args.seconds):
            console.print(f"{target.name}: {target.measured} -> {target.ratio:.2f} ({target.goal}: "
                          f"{'PASS' if target.passed else 'MISS'})")  # fmt: skip


if __name__ == "__main__":
    main()
