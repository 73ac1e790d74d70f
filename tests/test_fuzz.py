"""A bounded schemathesis run against a real server (`make fuzz` runs a longer one): no 5xx, no response that
breaks its declared schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_the_api_survives_property_based_fuzzing() -> None:
    completed = subprocess.run(
        [sys.executable, "tools/fuzz.py", "--max-examples", "25", "--seed", "7"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-5000:] + completed.stderr[-2000:]
    assert "passed" in completed.stdout
