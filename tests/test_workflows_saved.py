"""Workflow definitions saved on this server: `visionserve workflows add|list|show|remove`, kept in the store for
the saved-workflow routes (the reference fetches them from its cloud, which an offline server cannot); `add` refuses
what the compiler refuses, and a saved definition runs through every saved-workflow spelling and the official SDK."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import Server
from tests.test_official_sdk import SDK_PYTHON
from tests.test_sdk_workflows import without_uuids
from tests.test_workflows import DETECT, SCRIPT, detector, workflow
from visionserve.cli import app
from visionserve.cli.common import console
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
    # Wide enough that a long home path is not folded: the console took its width when imported, and under
    # pytest-xdist that is COLUMNS=80 (a worker's basetemp makes the path longer too).
    monkeypatch.setattr(console, "width", 400)
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "roboflow_core/no_such_block@v1"}, "Step 'det', property 'type': unknown block type"),
        ({"images": "$inputs.picture"}, "Step 'det', property 'images': $inputs.picture names no input"),
        ({"confidence": "$steps.det.predictions"}, "Step 'det', property 'confidence': a step cannot read its own"),
    ],
    ids=["unknown block", "bad selector", "reads itself"],
)
def test_add_refuses_what_the_compiler_refuses_with_its_message(home: Path, tmp_path: Path, change: dict,
                                                                message: str) -> None:  # fmt: skip
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**DEFINITION, "steps": [{**DEFINITION["steps"][0], **change}]}))
    code, output = run("add", str(path), "--id", "bad")
    assert code == 1 and message in output, output
    assert not (home / "workflows").exists() or SavedWorkflows(home).ids() == []


def test_add_refuses_more_steps_than_the_servers_cap(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONSERVE_WORKFLOW_MAX_STEPS", "1")
    path = tmp_path / "detect.json"
    second = {**DEFINITION["steps"][0], "name": "again"}
    path.write_text(json.dumps({**DEFINITION, "steps": [*DEFINITION["steps"], second]}))
    code, output = run("add", str(path), "--id", "detect")
    assert code == 1 and "VISIONSERVE_WORKFLOW_MAX_STEPS" in output


def test_a_definition_added_by_id_runs_on_every_saved_route_and_through_the_official_sdk(
    fixture_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workflows add` writes into the home the running server reads, which picks the definition up at once."""
    monkeypatch.setenv("VISIONSERVE_HOME", str(fixture_server.home))
    spec = workflow([detector()], {"dets": "$steps.det.predictions", "model": "$steps.det.model_id"})
    path = tmp_path / "detect.json"
    path.write_text(json.dumps(spec))
    assert run("add", str(path), "--id", "added-detect", "--force")[0] == 0
    image = {"type": "base64", "value": base64.b64encode(DETECT[0].read_bytes()).decode()}
    with fixture_server.client() as http:
        inline = http.post("/workflows/run", json={"specification": spec, "inputs": {"image": image}})
        answers = [http.post(route, json={"inputs": {"image": image}})
                   for route in ("/my-space/workflows/added-detect", "/infer/workflows/my-space/added-detect")]
    assert inline.status_code == 200 and inline.json()["outputs"][0]["dets"]["predictions"]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert without_uuids(answer.json()["outputs"]) == without_uuids(inline.json()["outputs"])
    command = [str(SDK_PYTHON), str(SCRIPT), "--url", fixture_server.url, "--workspace", "my-space",
               "--workflow-id", "added-detect", f"image={DETECT[0]}"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert without_uuids(json.loads(completed.stdout)["outputs"]) == without_uuids(inline.json()["outputs"])
