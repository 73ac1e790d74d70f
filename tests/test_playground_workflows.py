"""The playground's Workflow mode in a real browser (tests/browser_harness.py): a definition loaded from a file or
pasted, its parameters as inputs, each output shown by name (images decoded, detections drawn over the input with
the model mode's drawing code) and a broken definition's message naming the step."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.browser_harness import DESKTOP, PHONE, assert_clean, browser, open_page, screenshot
from tests.conftest import FIXTURES, Server, b64

__all__ = ["browser", "open_page"]  # fixtures
PHOTO = FIXTURES / "images" / "detect_4.jpg"  # 480×320, shapes the built-in shapes/1 finds
PHOTO_SIZE = (480, 320)
CONFIDENCE = 0.3  # typed into the parameter's field, instead of the definition's default
DEFINITION = {
    "version": "1.0",
    "inputs": [
        {"type": "WorkflowImage", "name": "picture"},
        {"type": "WorkflowParameter", "name": "confidence", "default_value": 0.5},
    ],
    "steps": [
        {"type": "roboflow_core/roboflow_object_detection_model@v2", "name": "det", "images": "$inputs.picture",
         "model_id": "shapes/1", "confidence": "$inputs.confidence"},
        {"type": "roboflow_core/bounding_box_visualization@v1", "name": "boxes", "image": "$inputs.picture",
         "predictions": "$steps.det.predictions"},
    ],
    "outputs": [
        {"type": "JsonField", "name": "annotated", "selector": "$steps.boxes.image"},
        {"type": "JsonField", "name": "detections", "selector": "$steps.det.predictions"},
        {"type": "JsonField", "name": "model", "selector": "$steps.det.model_id"},
    ],
}  # fmt: skip


def direct_run(client: httpx.Client, definition: dict, **parameters: object) -> httpx.Response:
    image = {"type": "base64", "value": b64(PHOTO.read_bytes())}
    body = {"specification": definition, "inputs": {"picture": image, **parameters}}
    return client.post("/workflows/run", json=body)


def open_workflow_mode(server: Server, open_page, viewport: dict[str, int]):  # type: ignore[no-untyped-def]
    page, log = open_page(server, "/", viewport)
    page.click("label[for='mode-workflow']")
    page.wait_for_selector("#workflow-definition", state="visible")
    return page, log


def run_and_wait(page) -> None:  # type: ignore[no-untyped-def]
    page.set_input_files("#file", str(PHOTO))
    page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0")
    page.click("#run")
    page.wait_for_function(
        "() => document.getElementById('workflow-outputs').children.length > 0"
        " || !document.getElementById('error').hidden",
        timeout=60_000,
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_workflow_file_runs_and_each_output_is_shown_by_name(
    server: Server, client: httpx.Client, open_page, tmp_path: Path, viewport: dict[str, int]
) -> None:
    expected = direct_run(client, DEFINITION, confidence=CONFIDENCE)
    assert expected.status_code == 200, expected.text
    predictions = expected.json()["outputs"][0]["detections"]["predictions"]
    assert predictions, "the fixture photo must give detections"

    page, log = open_workflow_mode(server, open_page, viewport)
    definition_file = tmp_path / "detect-and-draw.json"
    definition_file.write_text(json.dumps(DEFINITION))
    page.set_input_files("#workflow-file", str(definition_file))
    field = page.locator("#workflow-parameters input[name='confidence']")
    field.wait_for(state="visible")
    assert float(field.input_value()) == 0.5  # the definition's default
    field.fill(str(CONFIDENCE))
    run_and_wait(page)
    assert page.locator("#error").is_hidden(), page.inner_text("#error")

    outputs = page.locator("#workflow-outputs [data-output]")
    names = outputs.evaluate_all("nodes => nodes.map((node) => node.dataset.output)")
    assert names == ["annotated", "detections", "model"]
    annotated = page.locator("[data-output='annotated'] img.output-image")
    annotated.wait_for(state="visible")
    page.wait_for_function(
        "() => document.querySelector(\"[data-output='annotated'] img.output-image\").naturalWidth > 0"
    )
    assert annotated.evaluate("img => [img.naturalWidth, img.naturalHeight]") == list(PHOTO_SIZE)

    drawn = page.locator("[data-output='detections'] svg.overlay rect.box")
    assert drawn.count() == len(predictions)
    shown_json = json.loads(page.inner_text("#json"))
    assert len(shown_json["outputs"][0]["detections"]["predictions"]) == drawn.count()
    classes = drawn.evaluate_all("rects => rects.map((rect) => rect.dataset.class)")
    assert sorted(classes) == sorted(p["class"] for p in predictions)
    background = page.locator("[data-output='detections'] img")
    assert background.evaluate("img => [img.naturalWidth, img.naturalHeight]") == list(PHOTO_SIZE)
    assert json.loads(page.inner_text("[data-output='model'] pre")) == "shapes/1"
    assert_clean(page, log)
    screenshot(page, f"playground-workflow-{viewport['width']}")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_pasted_broken_definition_shows_the_servers_message_naming_the_step(
    server: Server, client: httpx.Client, open_page, viewport: dict[str, int]
) -> None:
    broken = json.loads(json.dumps(DEFINITION))
    broken["steps"][1]["type"] = "roboflow_core/no_such_block@v1"
    answer = direct_run(client, broken)
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert "'boxes'" in message

    page, log = open_workflow_mode(server, open_page, viewport)
    page.fill("#workflow-definition", json.dumps(broken, indent=2))
    run_and_wait(page)
    assert page.inner_text("#error") == f"400: {message}"
    assert page.locator("#workflow-outputs > *").count() == 0
    problems = log.problems(page)
    # The browser logs the 400 itself as a failed resource; nothing else may go wrong.
    problems["console errors"] = [text for text in problems["console errors"] if "status of 400" not in text]
    assert all(not found for found in problems.values()), problems
    screenshot(page, f"playground-workflow-error-{viewport['width']}")


def test_text_that_is_no_definition_is_refused_in_the_page(server: Server, open_page) -> None:
    page, log = open_workflow_mode(server, open_page, DESKTOP)
    page.fill("#workflow-definition", '{"version": "1.0", "steps": [')
    page.click("#run")
    page.wait_for_selector("#error", state="visible")
    assert page.inner_text("#error").startswith("The workflow definition is not JSON")
    page.click("label[for='mode-model']")  # and back: the model mode as it was, the workflow's fields away
    page.wait_for_selector("#model", state="visible")
    assert page.locator("#workflow-definition").is_hidden() and page.locator("#error").is_hidden()
    assert_clean(page, log)


def test_a_workflow_run_sends_the_key_the_page_was_given(start_server, open_page) -> None:
    secured = start_server({"VISIONSERVE_API_KEYS": "sesame"})
    page, log = open_page(secured, "/")
    page.wait_for_selector("#key-form", state="visible")
    page.fill("#api-key", "sesame")
    page.click("#key-form button")
    page.wait_for_selector("#key-form", state="hidden")
    sent: list[str | None] = []

    def note_key(request) -> None:  # type: ignore[no-untyped-def]
        if "/workflows/" in request.url:
            sent.append(request.headers.get("authorization"))

    page.on("request", note_key)
    page.click("label[for='mode-workflow']")
    page.fill("#workflow-definition", json.dumps(DEFINITION))
    run_and_wait(page)
    assert page.locator("[data-output='detections'] svg.overlay rect.box").count() > 0
    assert sent == ["Bearer sesame"]
    problems = log.problems(page)  # the catalog's 401 before the key was given is the one console error
    assert [text for text in problems["console errors"] if "status of 401" not in text] == []
    assert not any(problems[kind] for kind in ("blocked", "script errors", "CSP violations")), problems
