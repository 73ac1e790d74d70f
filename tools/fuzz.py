"""Property-based fuzzing of the HTTP API with schemathesis, against a real server on loopback.

    python tools/fuzz.py [--max-examples 300] [--seed N]

Every operation in /openapi.json is called with generated valid and invalid data; the run fails on any 5xx, any
response that does not match its declared schema, wrong content types or headers. The `positive_data_acceptance`
check is left out: a body can be valid by the schema and still carry an image that cannot be decoded, which is a
correct 400.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from visionserve.server_process import ServerProcess


def fuzz(max_examples: int, seed: int | None = None) -> int:
    """Run schemathesis against a fresh server; its exit code (0: no failure)."""
    schemathesis = Path(sys.executable).parent / "schemathesis"
    with tempfile.TemporaryDirectory() as home:
        env = {"VISIONSERVE_HOME": home, "VISIONSERVE_WEIGHTS_API": "", "VISIONSERVE_LOG_LEVEL": "warning"}
        server = ServerProcess(Path(home) / "server.log", env=env).start()
        try:
            command = [
                str(schemathesis), "run", f"{server.url}/openapi.json",
                "--max-examples", str(max_examples),
                "--exclude-checks", "positive_data_acceptance",
                *(("--seed", str(seed)) if seed is not None else ()),
            ]  # fmt: skip
            return subprocess.run(command, env={**os.environ, "NO_COLOR": "1"}).returncode
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    sys.exit(fuzz(args.max_examples, args.seed))


if __name__ == "__main__":
    main()
