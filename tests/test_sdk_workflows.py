"""Running workflows from Python (`visionserve.sdk`'s `run_workflow`, `infer_from_workflow`) and from the shell
(`visionserve workflows run`), against a real server with the fixture models: the answers equal what the official
`inference-sdk` returns for the same definition and images, and the requests equal the ones it sends."""

from __future__ import annotations

import base64
import http.server
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import Server
from tests.test_cli_server import visionserve
from tests.test_official_sdk import SDK_PYTHON
from tests.test_workflows import DETECT, SCRIPT, boxes, detector, run_sdk, workflow
from visionserve.cli import app
from visionserve.cli.workflows import parse_param
from visionserve.sdk import HTTPCallErrorError, HTTPClientError, InferenceConfiguration, InferenceHTTPClient
from visionserve.sdk.errors import InvalidParameterError
from visionserve.workflows.saved import SavedWorkflows

SPEC = workflow(
    [detector(confidence="$inputs.conf"),
     {"type": "roboflow_core/dynamic_crop@v1", "name": "crop", "images": "$inputs.image",
      "predictions": "$steps.det.predictions"},
     {"type": "ClassificationModel", "name": "cls", "images": "$steps.crop.crops", "model_id": "shapes-classify/1"},
     {"type": "roboflow_core/bounding_box_visualization@v1", "name": "draw", "image": "$inputs.image",
      "predictions": "$steps.det.predictions"}],
    {"dets": "$steps.det.predictions", "crops": "$steps.crop.crops", "classes": "$steps.cls.predictions",
     "annotated": "$steps.draw.image", "model": "$steps.det.model_id"},
    {"conf": 0.5},
)  # fmt: skip
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VOLATILE = {"time"}  # seconds a model took: differs between two runs


def without_uuids(value: Any, seen: dict[str, str] | None = None) -> Any:
    """`value` with each uuid (detection, crop and inference ids) replaced by its order of first appearance, so
    two runs compare equal while the links between ids (a crop's parent_id) still have to match."""
    seen = {} if seen is None else seen
    if isinstance(value, dict):
        return {key: without_uuids(item, seen) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [without_uuids(item, seen) for item in value]
    if isinstance(value, str) and UUID.match(value):
        return seen.setdefault(value, f"id-{len(seen)}")
    return value


@pytest.fixture
def client(fixture_server: Server) -> Iterator[InferenceHTTPClient]:
    with InferenceHTTPClient(fixture_server.url, api_key="test-key") as http:
        yield http


def test_run_workflow_returns_what_the_official_sdk_returns(
    fixture_server: Server, client: InferenceHTTPClient, tmp_path: Path
) -> None:
    official = run_sdk(fixture_server, SPEC, DETECT, tmp_path, "--param", "conf=0.6")["outputs"]
    ours = client.run_workflow(specification=SPEC, images={"image": [str(path) for path in DETECT]},
                               parameters={"conf": 0.6})  # fmt: skip
    assert without_uuids(ours) == without_uuids(official)
    assert len(ours) == 2 and all(len(output["crops"]) == len(output["dets"]["predictions"]) >= 3 for output in ours)
    for output in ours:  # images come back as their base64 text, as the official client's default format
        assert all(isinstance(crop, str) for crop in output["crops"])
        drawn = cv2.imdecode(np.frombuffer(base64.b64decode(output["annotated"]), np.uint8), cv2.IMREAD_COLOR)
        assert drawn.shape[:2] == (output["dets"]["image"]["height"], output["dets"]["image"]["width"])


def test_every_image_input_infer_takes_works_in_a_batch(client: InferenceHTTPClient) -> None:
    data = DETECT[0].read_bytes()
    pixels = cv2.imread(str(DETECT[0]))
    inputs = [str(DETECT[0]), DETECT[0], data, base64.b64encode(data).decode(), pixels,
              Image.fromarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB))]  # fmt: skip
    outputs = client.run_workflow(specification=SPEC, images={"image": inputs})
    assert len(outputs) == len(inputs)
    found = [boxes(output["dets"]["predictions"]) for output in outputs]
    assert found[1:4] == [found[0]] * 3  # the same file bytes, however given
    assert [output["annotated"] for output in outputs[1:4]] == [outputs[0]["annotated"]] * 3
    for reencoded in found[4:]:  # numpy and PIL images are sent as JPEG: the same shapes are found
        assert [p["class"] for p in reencoded] == [p["class"] for p in found[0]]


def test_images_come_back_as_numpy_or_pil_when_configured(client: InferenceHTTPClient) -> None:
    images = {"image": str(DETECT[0])}
    (as_text,) = client.run_workflow(specification=SPEC, images=images)
    client.configure(InferenceConfiguration(output_visualisation_format="numpy"))
    (as_arrays,) = client.run_workflow(specification=SPEC, images=images)
    client.configure(InferenceConfiguration(output_visualisation_format="pillow"))
    (as_pil,) = client.run_workflow(specification=SPEC, images=images)
    sent = cv2.imdecode(np.frombuffer(base64.b64decode(as_text["annotated"]), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(as_arrays["annotated"], sent)
    assert np.array_equal(np.asarray(as_pil["annotated"]), cv2.cvtColor(sent, cv2.COLOR_BGR2RGB))
    assert all(isinstance(crop, np.ndarray) for crop in as_arrays["crops"]) and len(as_arrays["crops"]) >= 3
    assert without_uuids(as_arrays["dets"]) == without_uuids(as_text["dets"])  # only images change


def test_excluded_fields_and_the_profiler_trace_written_to_the_profiling_directory(
    client: InferenceHTTPClient, tmp_path: Path
) -> None:
    client.configure(InferenceConfiguration(profiling_directory=str(tmp_path / "traces")))
    (output,) = client.run_workflow(specification=SPEC, images={"image": str(DETECT[0])},
                                    excluded_fields=["crops", "annotated"], enable_profiling=True)  # fmt: skip
    assert set(output) == {"dets", "classes", "model"}
    (trace,) = (tmp_path / "traces").glob("workflow_execution_tack_*.json")
    events = json.loads(trace.read_text())
    assert {"workflow_compilation", "inputs", "outputs"} <= {event["name"] for event in events}
    assert {"name", "ph", "pid", "tid", "ts"} <= set(events[0])


@pytest.mark.parametrize(
    "call",
    [{}, {"workspace_name": "ws"}, {"workflow_id": "w"},
     {"workspace_name": "ws", "workflow_id": "w", "specification": SPEC}],
    ids=["nothing", "workspace only", "id only", "both"],
)  # fmt: skip
def test_a_workflow_is_named_or_given_never_both_before_any_request(call: dict) -> None:
    with InferenceHTTPClient("http://127.0.0.1:9") as unreachable:  # a request would be a connection error
        with pytest.raises(InvalidParameterError, match="mutually exclusive") as raised:
            unreachable.run_workflow(images={"image": str(DETECT[0])}, **call)
        assert isinstance(raised.value, HTTPClientError)
        with pytest.raises(InvalidParameterError):
            legacy = {("workflow_name" if key == "workflow_id" else key): value for key, value in call.items()}
            unreachable.infer_from_workflow(**legacy)


def test_saved_and_legacy_urls_answer_as_the_inline_run(fixture_server: Server, client: InferenceHTTPClient) -> None:
    SavedWorkflows(fixture_server.home).add("sdk-detect-crop", SPEC, replace=True)
    images = {"image": str(DETECT[1])}
    inline = without_uuids(client.run_workflow(specification=SPEC, images=images))
    saved = client.run_workflow(workspace_name="ws", workflow_id="sdk-detect-crop", images=images)
    assert without_uuids(saved) == inline
    assert without_uuids(client.infer_from_workflow(workspace_name="ws", workflow_name="sdk-detect-crop",
                                                    images=images)) == inline  # fmt: skip
    assert without_uuids(client.infer_from_workflow(specification=SPEC, images=images)) == inline
    with pytest.raises(HTTPCallErrorError) as raised:
        client.run_workflow(workspace_name="ws", workflow_id="never-saved", images=images)
    assert raised.value.status_code == 404 and "offline" in raised.value.api_message


# --- the requests themselves, recorded by a loopback server, equal the official client's ---

CANNED = {"outputs": [{"picture": {"type": "base64", "value": "AAAA", "video_metadata": None},
                       "nested": [[{"type": "base64", "value": "BBBB"}], {"inner": {"type": "base64", "value": "CC"}}],
                       "count": 3, "other": {"type": "url", "value": "kept"}}],
          "profiler_trace": None}  # fmt: skip


class Recorder(http.server.ThreadingHTTPServer):
    """Records each POST (path and JSON body) and answers CANNED."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                recorder.seen.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
                body = json.dumps(CANNED).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def official_against(recorder: Recorder, tmp_path: Path, *flags: str) -> list[dict]:
    command = [str(SDK_PYTHON), str(SCRIPT), "--url", recorder.url, "--param", "conf=0.5", *flags,
               *(f"image={path}" for path in DETECT), f"other={DETECT[0]}"]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)["outputs"]


def test_requests_and_decoding_equal_the_official_clients(recorder: Recorder, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SPEC))
    official = official_against(recorder, tmp_path, "--spec", str(spec_path))
    official_saved = official_against(recorder, tmp_path, "--workspace", "ws", "--workflow-id", "flow")
    images = {"image": [str(path) for path in DETECT], "other": str(DETECT[0])}
    with InferenceHTTPClient(recorder.url, api_key="test-key") as ours:
        decoded = ours.run_workflow(specification=SPEC, images=images, parameters={"conf": 0.5})
        ours.run_workflow(workspace_name="ws", workflow_id="flow", images=images, parameters={"conf": 0.5})
    assert decoded == official == official_saved
    assert decoded[0]["picture"] == "AAAA" and decoded[0]["nested"] == [["BBBB"], {"inner": "CC"}]
    assert decoded[0]["other"] == {"type": "url", "value": "kept"}
    (inline_path, inline), (saved_path, saved), (our_inline_path, our_inline), (our_saved_path, our_saved) = (
        recorder.seen)
    assert (our_inline_path, our_inline) == (inline_path, inline) == ("/workflows/run", inline)
    assert (our_saved_path, our_saved) == (saved_path, saved) == ("/ws/workflows/flow", saved)
    sent = base64.b64encode(DETECT[1].read_bytes()).decode()  # a path's file bytes, as they are
    assert inline["inputs"]["image"][1] == {"type": "base64", "value": sent}
    assert inline["inputs"]["conf"] == 0.5 and inline["use_cache"] is True and inline["api_key"] == "test-key"


def test_optional_fields_urls_and_nested_batches(recorder: Recorder, tmp_path: Path) -> None:
    data = DETECT[0].read_bytes()
    value = {"type": "base64", "value": base64.b64encode(data).decode()}
    with InferenceHTTPClient(recorder.url) as ours:
        ours.configure(InferenceConfiguration(profiling_directory=str(tmp_path)))
        ours.run_workflow(specification=SPEC, images={"image": [[data, data], [data]]})
        ours.run_workflow(workspace_name="ws", workflow_id="flow", excluded_fields=["crops"], use_cache=False,
                          enable_profiling=True, workflow_version_id="v2", disable_sinks=True)  # fmt: skip
        ours.infer_from_workflow(workspace_name="ws", workflow_name="flow")
        ours.infer_from_workflow(specification=SPEC, workflow_version_id="ignored")
    (_, nested), (_, flags), (legacy_saved, _), (legacy_inline, legacy_body) = recorder.seen
    assert nested == {"api_key": None, "use_cache": True, "enable_profiling": False,
                      "inputs": {"image": [[value, value], [value]]}, "specification": SPEC}  # fmt: skip
    assert flags == {"api_key": None, "use_cache": False, "enable_profiling": True, "disable_sinks": True,
                     "inputs": {}, "excluded_fields": ["crops"], "workflow_version_id": "v2"}  # fmt: skip
    assert (legacy_saved, legacy_inline) == ("/infer/workflows/ws/flow", "/infer/workflows")
    assert "workflow_version_id" not in legacy_body  # only the saved route takes it


# --- visionserve workflows run ---


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["workflows", "run", *args])
    return result.exit_code, " ".join(result.output.split())


def test_cli_run_prints_a_summary_and_saves_the_images(
    fixture_server: Server, client: InferenceHTTPClient, tmp_path: Path
) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SPEC))
    code, shown = cli(str(spec_path), "--image", str(DETECT[0]), "--param", "conf=0.6", "--api-url", fixture_server.url,
                      "--output", str(tmp_path / "out"))  # fmt: skip
    assert code == 0, shown
    (expected,) = client.run_workflow(specification=SPEC, images={"image": str(DETECT[0])}, parameters={"conf": 0.6})
    count = len(expected["dets"]["predictions"])
    assert f"dets: {count} predictions" in shown and "model: shapes-detect/1" in shown
    assert f"crops: {count} images" in shown and "annotated: image 320x320" in shown
    assert f"classes: {count} items: class {expected['classes'][0]['top']} " in shown
    assert base64.b64decode(expected["annotated"]) == (tmp_path / "out" / "annotated.jpg").read_bytes()
    for index, crop in enumerate(expected["crops"]):  # the server's JPEG bytes, not encoded again
        assert base64.b64decode(crop) == (tmp_path / "out" / f"crops-{index}.jpg").read_bytes()


def test_cli_run_json_on_stdout_and_a_saved_workflow_by_id(
    fixture_server: Server, client: InferenceHTTPClient, tmp_path: Path
) -> None:
    SavedWorkflows(fixture_server.home).add("cli-detect-crop", SPEC, replace=True)
    completed = visionserve("workflows", "run", "--id", "cli-detect-crop", "--image", f"image={DETECT[0]}",
                            "--image", f"image={DETECT[1]}", "--json", "--output", str(tmp_path / "out"),
                            env={"VISIONSERVE_API_URL": fixture_server.url})  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    expected = client.run_workflow(specification=SPEC, images={"image": [str(path) for path in DETECT]})
    assert without_uuids(json.loads(completed.stdout)) == without_uuids(expected)  # nothing else on stdout
    assert f"images written to {tmp_path / 'out'}" in " ".join(completed.stderr.split())
    assert (tmp_path / "out" / "1-annotated.jpg").exists() and (tmp_path / "out" / "0-crops-0.jpg").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a definition FILE or --id NAME"),
        (["--id", "x", "spec.json"], "give a definition FILE or --id NAME, not both"),
        (["spec.json", "--image", "missing.jpg"], "'missing.jpg' is neither an existing file"),
        (["spec.json", "--image", "a=b=c"], "'b=c' is neither an existing file"),
        (["spec.json", "--param", "novalue"], "--param takes NAME=VALUE, not 'novalue'"),
    ],
)
def test_cli_run_refuses_bad_arguments_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
                                               message: str) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    code, shown = cli(*args, "--api-url", "http://127.0.0.1:9")
    assert code == 1 and message in shown


def test_cli_run_reports_the_servers_error(fixture_server: Server, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(workflow([detector(model="no-such/1")], {"dets": "$steps.det.predictions"})))
    code, shown = cli(str(spec_path), "--image", str(DETECT[0]), "--api-url", fixture_server.url)
    assert code == 1 and "HTTP 404" in shown and "no-such/1" in shown


def test_cli_run_takes_an_image_url_with_a_query(
    fixture_server: Server, file_server: tuple[str, Path], client: InferenceHTTPClient, tmp_path: Path
) -> None:
    base, folder = file_server
    (folder / "shapes.jpg").write_bytes(DETECT[0].read_bytes())
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SPEC))
    code, shown = cli(str(spec_path), "--image", f"{base}/shapes.jpg?size=full", "--api-url", fixture_server.url)
    (expected,) = client.run_workflow(specification=SPEC, images={"image": str(DETECT[0])})
    assert code == 0 and f"dets: {len(expected['dets']['predictions'])} predictions" in shown, shown


def test_params_are_json_when_they_parse_else_strings() -> None:
    assert parse_param("conf=0.5") == ("conf", 0.5)
    assert parse_param("classes=[\"a\", \"b\"]") == ("classes", ["a", "b"])
    assert parse_param("name=circle") == ("name", "circle")
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param("expr=a=b") == ("expr", "a=b")
