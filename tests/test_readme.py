"""The README's example answer is what the server returns for the example photo today."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import b64

ROOT = Path(__file__).parent.parent


def test_readme_example_response_matches_the_server(client: httpx.Client) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-example-response -->\s*```json\n(.*?)```", readme, re.S)
    assert block, "the README lost its example response"
    documented = json.loads(block.group(1))
    photo = (ROOT / "visionserve/assets/astronaut.jpg").read_bytes()
    body = {"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(photo)}}
    actual = client.post("/infer/object_detection", json=body).json()
    assert set(actual) == set(documented) and actual["image"] == documented["image"]
    assert len(actual["predictions"]) == len(documented["predictions"])
    for mine, theirs in zip(actual["predictions"], documented["predictions"]):
        assert set(mine) == set(theirs)
        assert {k: mine[k] for k in ("x", "y", "width", "height", "class", "class_id")} == {
            k: theirs[k] for k in ("x", "y", "width", "height", "class", "class_id")
        }
        assert mine["confidence"] == pytest.approx(theirs["confidence"], abs=1e-4)


def test_readme_python_example_runs(server) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### From Python\s*```python\n(.*?)```", readme, re.S)
    assert block, "the README lost its Python example"
    code = block.group(1).replace("http://127.0.0.1:9001", server.url)
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "FACE_FEMALE"
