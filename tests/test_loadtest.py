"""The benchmarks' load generator against a real server: wrk when installed (CI installs it), the Python client
when it is not; both count answers and failures the same way."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import orjson
import pytest

from tests.conftest import Server, image_value, photo
from visionserve.loadtest import drive, load_generator

PATH = "/infer/object_detection"


def body(model_id: str) -> bytes:
    return orjson.dumps({"model_id": model_id, "image": image_value(photo("astronaut"))})


@pytest.fixture(params=["wrk", "python"])
def generator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Each generator in turn: the Python client is chosen by a PATH without wrk on it."""
    if request.param == "wrk":
        if shutil.which("wrk") is None:
            reason = "wrk is not installed (apt-get install wrk; .ci/run installs it)"
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"the wrk path must be tested in CI: {reason}")
            pytest.skip(reason)
    else:
        empty = tmp_path / "bin"
        empty.mkdir()
        monkeypatch.setenv("PATH", str(empty))
    assert load_generator() == request.param
    return request.param


def test_drive_counts_answers_and_latencies(server: Server, generator: str) -> None:
    result = drive(server.url, PATH, body("nudenet/1"), 2, seconds=1, warmup_s=0.5)
    assert result.generator == generator
    assert result.errors == 0 and result.requests >= 5
    assert 0.9 <= result.wall_s <= 3
    assert 0 < result.p50_ms <= result.p90_ms < 5_000
    assert result.per_second == pytest.approx(result.requests / result.wall_s)


def test_drive_counts_refusals_as_errors(server: Server, generator: str) -> None:
    result = drive(server.url, PATH, body("no-such-model/1"), 1, seconds=1, warmup_s=0)
    assert result.requests == 0 and result.errors >= 5  # every answer is a 404
