"""Data aggregator: values gathered across runs of one definition on a real server, emitted when the interval
closes, checked against the same figures computed from /infer."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, b64
from tests.test_workflows import DETECT, detector, infer, workflow


@pytest.fixture(scope="module")
def http(fixture_server: Server):
    with fixture_server.client() as client:
        yield client


def aggregator(**options: object) -> dict:
    return {"type": "roboflow_core/data_aggregator@v1", "name": "agg",
            "data": {"n": "$steps.det.predictions", "classes": "$steps.det.predictions"},
            "data_operations": {"n": [{"type": "SequenceLength"}],
                                "classes": [{"type": "ExtractDetectionProperty", "property_name": "class_name"}]},
            "aggregation_mode": {"n": ["sum", "avg", "max", "min", "count"],
                                 "classes": ["distinct", "count_distinct", "values_counts"]}, **options}  # fmt: skip


def run_on(http: httpx.Client, spec: dict, path: Path) -> dict:
    image = {"type": "base64", "value": b64(path.read_bytes())}
    response = http.post("/workflows/run", json={"specification": spec, "inputs": {"image": image}})
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    return output


def test_aggregates_over_runs_emitted_when_the_interval_closes(http: httpx.Client) -> None:
    spec = workflow([detector(), aggregator(interval=3, interval_unit="runs")], {"agg": "$steps.agg.*"})
    spec["outputs"].append({"type": "JsonField", "name": "sum", "selector": "$steps.agg.n_sum"})
    paths = [DETECT[0], DETECT[1], DETECT[0]]
    outputs = [run_on(http, spec, path) for path in paths]
    for early in outputs[:2]:
        assert early["sum"] is None and set(early["agg"].values()) == {None}  # the interval is still open
    direct = [[p["class"] for p in infer(http, "object_detection", "shapes-detect/1", path.read_bytes())["predictions"]]
              for path in paths]  # fmt: skip
    counts = [len(classes) for classes in direct]
    every = Counter(name for classes in direct for name in classes)
    assert outputs[2]["agg"] == {
        "n_sum": sum(counts), "n_avg": pytest.approx(sum(counts) / 3), "n_max": max(counts), "n_min": min(counts),
        "n_count": 3, "classes_distinct": list(every), "classes_count_distinct": len(every),
        "classes_values_counts": dict(every),
    }  # fmt: skip
    assert outputs[2]["sum"] == sum(counts) >= 10
    assert run_on(http, spec, DETECT[1])["sum"] is None  # a new interval began


def test_time_intervals_and_state_per_definition(http: httpx.Client) -> None:
    spec = workflow([detector(), aggregator(interval=1, interval_unit="seconds")], {"n": "$steps.agg.n_count"})
    other = workflow([detector(), aggregator(interval=1, interval_unit="minutes")], {"n": "$steps.agg.n_count"})
    assert run_on(http, spec, DETECT[0])["n"] is None
    assert run_on(http, spec, DETECT[0])["n"] is None
    time.sleep(1.1)
    assert run_on(http, other, DETECT[0])["n"] is None  # another definition: its own interval, just begun
    assert run_on(http, spec, DETECT[0])["n"] == 3  # only this definition's three runs


def test_unknown_aggregated_output_and_field_are_400s(http: httpx.Client) -> None:
    spec = workflow([detector(), aggregator()], {"n": "$steps.agg.n_median"})
    image = {"type": "base64", "value": b64(DETECT[0].read_bytes())}
    response = http.post("/workflows/run", json={"specification": spec, "inputs": {"image": image}})
    assert response.status_code == 400 and "n_median" in response.json()["message"], response.text
    spec = workflow([detector(), aggregator(aggregation_mode={"m": ["sum"]})], {"n": "$steps.agg.m_sum"})
    response = http.post("/workflows/run", json={"specification": spec, "inputs": {"image": image}})
    assert response.status_code == 400 and "Step 'agg'" in response.json()["message"], response.text
