"""The documentation pages and the playground in a real browser (tests/browser_harness.py): they render, draw
where the JSON says, and send nothing off-host. tests/test_playground_browser.py has the playground's finer points."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_harness import (
    PHONE, PHOTO, assert_clean, browser, choose_model, open_page, run_detection, screenshot,
)  # fmt: skip
from tests.conftest import Server

__all__ = ["browser", "open_page"]  # fixtures


def test_swagger_ui_renders_every_operation_with_no_network(server: Server, client, open_page) -> None:
    page, log = open_page(server, "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    # Deprecated operations (the legacy workflow spellings) carry a class of their own.
    shown = set(page.locator(".opblock-summary-path, .opblock-summary-path__deprecated").all_inner_texts())
    documented = set(client.get("/openapi.json").json()["paths"])
    assert {path.replace("\u200b", "") for path in shown} == documented
    page.locator(".opblock-summary").first.click()  # an operation opened, its schemas drawn, under the page's CSP
    page.locator(".opblock-body .model-example").first.wait_for()
    page.locator(".try-out__btn").first.click()
    assert_clean(page, log)


def test_redoc_renders_its_operations_with_no_network(server: Server, open_page) -> None:
    page, log = open_page(server, "/redoc")
    page.locator("h2", has_text="Detect objects in one image or a list of images").wait_for(timeout=30_000)
    operations = page.locator("h2").all_inner_texts()
    assert "Load a model (downloading it first if needed)" in operations
    assert len(operations) >= 15
    page.get_by_text("API docs by Redocly").wait_for()  # the badge, whose logo ReDoc would fetch from a CDN
    assert_clean(page, log)


def test_playground_lists_the_model_and_draws_the_face_box_where_the_json_says(server: Server, open_page) -> None:
    page, log = open_page(server, "/")
    choose_model(page, "nudenet/1")
    assert page.locator("nav a").all_inner_texts() == ["API docs", "ReDoc", "Metrics"]
    result = run_detection(page)
    (face,) = [p for p in result["predictions"] if p["class"] == "FACE_FEMALE"]
    boxes = page.locator("#overlay rect.box")
    assert boxes.count() == len(result["predictions"])
    drawn = boxes.first
    # In the overlay's own units (image pixels): exactly the JSON's box.
    attributes = {name: float(drawn.get_attribute(name)) for name in ("x", "y", "width", "height")}
    assert attributes == pytest.approx(
        {"x": face["x"] - face["width"] / 2, "y": face["y"] - face["height"] / 2,
         "width": face["width"], "height": face["height"]}
    )  # fmt: skip
    # On the screen: where that box falls on the displayed photo, whatever its displayed size.
    photo = page.locator("#preview").bounding_box()
    box = drawn.bounding_box()
    scale = photo["width"] / result["image"]["width"]
    stroke = 2  # the outline's width on screen (CSS px), whatever the image's size
    assert box["x"] + stroke / 2 == pytest.approx(photo["x"] + attributes["x"] * scale, abs=1.5)
    assert box["y"] + stroke / 2 == pytest.approx(photo["y"] + attributes["y"] * scale, abs=1.5)
    assert box["width"] - stroke == pytest.approx(face["width"] * scale, abs=1.5)
    assert page.inner_text("#timing-server").endswith(" ms")
    assert page.inner_text("#timing-image") == "512×512"
    assert page.locator("#error").is_hidden()
    assert_clean(page, log)
    screenshot(page, "playground-desktop")


def test_playground_is_usable_at_phone_width_and_scrolls_to_the_result(server: Server, open_page) -> None:
    page, log = open_page(server, "/", PHONE)
    choose_model(page, "nudenet/1")
    result = run_detection(page)
    assert result["predictions"]
    # Below the form on a phone: Run brings the drawn result into view.
    page.wait_for_function(
        """() => { const stage = document.getElementById('stage').getBoundingClientRect();
                   return stage.top >= 0 && stage.top < innerHeight / 2 && stage.height > 100; }""",
        timeout=5_000,
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    photo = page.locator("#preview").bounding_box()
    assert photo["x"] >= 0 and photo["x"] + photo["width"] <= PHONE["width"]
    run = page.locator("#run").bounding_box()
    assert run["width"] >= 200 and run["height"] >= 32  # a button a thumb can hit
    assert_clean(page, log)
    screenshot(page, "playground-phone")


def test_playground_shows_a_readable_error_for_a_corrupt_image(server: Server, open_page, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(PHOTO.read_bytes()[:2000])
    page, _ = open_page(server, "/")
    choose_model(page, "nudenet/1")
    page.set_input_files("#file", str(corrupt))
    page.click("#run")
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    message = page.inner_text("#error")
    assert message.startswith("400: Could not load input image.") and "truncated or corrupt JPEG" in message
    assert page.locator("#overlay *").count() == 0
    screenshot(page, "playground-error")


def test_playground_asks_for_the_key_and_sends_it_as_a_bearer_token(start_server, open_page) -> None:
    secured = start_server({"VISIONSERVE_API_KEYS": "sesame"})
    page, log = open_page(secured, "/")
    page.wait_for_selector("#key-form", state="visible")
    assert "needs an API key" in page.inner_text("#key-message")
    sent: list[str | None] = []
    page.on("request", lambda request: sent.append(request.headers.get("authorization")) if "/infer/" in request.url else None)
    page.fill("#api-key", "wrong")
    page.click("#key-form button")
    page.wait_for_function("() => document.getElementById('key-message').textContent.includes('not valid')")
    assert page.locator("#key-form").is_visible()
    page.fill("#api-key", "sesame")
    page.click("#key-form button")
    choose_model(page, "nudenet/1")
    assert run_detection(page)["predictions"]
    assert sent == ["Bearer sesame"]
    assert log.blocked == []
    screenshot(page, "playground-key")
    # The key lives in this tab's sessionStorage until the tab closes, or until the user forgets it.
    assert page.evaluate("Object.values(sessionStorage)") == ["sesame"]
    page.click("#forget-key")
    assert page.evaluate("sessionStorage.length") == 0
    page.wait_for_selector("#key-form", state="visible")
    assert page.locator("#forget-key").is_hidden()


@pytest.mark.parametrize(
    ("model_id", "image", "shape"),
    [
        ("shapes-segment/1", "segment_0.jpg", "polygon.mask"),
        ("shapes-pose/1", "pose_0.jpg", "circle.keypoint"),
        ("shapes-obb/1", "obb_0.jpg", "polygon.oriented-box"),
        ("shapes-classify/1", "classify_0.jpg", "text"),
    ],
)
def test_playground_draws_every_task(fixture_server: Server, open_page, model_id: str, image: str, shape: str) -> None:
    from tests.conftest import FIXTURES

    page, _ = open_page(fixture_server, "/")
    choose_model(page, model_id)
    if model_id.startswith("shapes-classify"):
        assert page.locator("#iou").is_hidden()  # options a classifier does not take are not offered
    result = run_detection(page, FIXTURES / "images" / image)
    drawn = page.locator(f"#overlay {shape}")
    if shape == "circle.keypoint":
        assert drawn.count() == sum(len(p["keypoints"]) for p in result["predictions"]) > 0
        first = result["predictions"][0]["keypoints"][0]
        assert float(drawn.first.get_attribute("cx")) == pytest.approx(first["x"])
    elif shape == "text":
        assert page.locator("#overlay text").text_content().startswith(result["top"]) and result["top"]
    else:
        assert drawn.count() == len(result["predictions"]) > 0
        corners = [tuple(map(float, pair.split(","))) for pair in drawn.first.get_attribute("points").split()]
        assert corners == [pytest.approx((p["x"], p["y"])) for p in result["predictions"][0]["points"]]
    screenshot(page, f"playground-{model_id.split('/')[0]}")
