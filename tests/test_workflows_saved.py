"""Workflow definitions saved on this server: `visionserve workflows add|list|show|remove`, kept in the store for
the saved-workflow routes (the reference fetches them from its cloud, which an offline server cannot)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from visionserve.cli import app
from visionserve.workflows.saved import SavedWorkflowNotFound, SavedWorkflows

DEFINITION = {
    "version": "1.0",
    "inputs": [{"type": "WorkflowImage", "name": "image"}],
    "steps": [{"type": "roboflow_core/roboflow_object_detection_model@v2", "name": "det", "images": "$inputs.image",
               "model_id": "shapes/1"}],
    "outputs": [{"type": "JsonField", "name": "dets", "selector": "$steps.det.predictions"}],
}  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VISIONSERVE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["workflows", *args])
    return result.exit_code, " ".join(result.output.split())


def test_add_list_show_remove(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "detect.json"
    path.write_text(json.dumps(DEFINITION))
    assert run("add", str(path), "--id", "detect") == (0, "saved workflow detect: 1 steps "
                                                          "(roboflow_core/roboflow_object_detection_model@v2)")
    code, listed = run("list")
    assert code == 0 and "detect" in listed
    code, shown = run("show", "detect")
    assert code == 0 and json.loads(CliRunner().invoke(app, ["workflows", "show", "detect"]).output) == DEFINITION
    code, again = run("add", str(path), "--id", "detect")
    assert code == 1 and "already saved; --force replaces it" in again
    assert run("add", str(path), "--id", "detect", "--force")[0] == 0
    assert run("remove", "detect") == (0, "removed workflow detect")
    assert run("remove", "detect") == (1, "error: no workflow 'detect' is saved")
    assert run("list") == (0, f"no workflow is saved in {home / 'workflows'}")


def test_a_saved_run_request_body_is_read_as_its_specification(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"specification": DEFINITION, "inputs": {}}))
    assert run("add", str(path), "--id", "from-request")[0] == 0
    assert SavedWorkflows(home).get("from-request").definition == DEFINITION


@pytest.mark.parametrize(
    ("content", "workflow_id", "message"),
    [
        ("{not json", "w", "not valid JSON"),
        ('["a list"]', "w", "a JSON object with version, inputs, steps and outputs"),
        ('{"version": "1.0", "steps": []}', "w", "lacks inputs, outputs"),
        (json.dumps(DEFINITION), "../escape", "Invalid workflow id '../escape'"),
        (json.dumps(DEFINITION), ".hidden", "Invalid workflow id '.hidden'"),
    ],
)
def test_bad_definitions_and_ids_are_refused(home: Path, tmp_path: Path, content: str, workflow_id: str,
                                             message: str) -> None:  # fmt: skip
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, output = run("add", str(path), "--id", workflow_id)
    assert code == 1 and message in output
    assert not (home / "workflows").exists() or SavedWorkflows(home).ids() == []


def test_an_unknown_id_says_definitions_are_not_fetched_from_the_cloud(home: Path) -> None:
    with pytest.raises(SavedWorkflowNotFound) as raised:
        SavedWorkflows(home).get("mine")
    assert raised.value.status_code == 404
    assert "not fetched from Roboflow's cloud" in raised.value.message and "workflows add FILE --id mine" in (
        raised.value.message)
