"""The documentation pages and the playground in a real browser: Debian's Chromium, driven by Playwright, with
every request that leaves this machine blocked (a self-hosted server is often air-gapped).

Screenshots of the playground land in build/screenshots/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server

CHROMIUM = os.environ.get("VISIONSERVE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ROOT = Path(__file__).parent.parent
SCREENSHOTS = ROOT / "build" / "screenshots"
PHOTO = ROOT / "visionserve" / "assets" / "astronaut.jpg"
REDOC_BADGE = "https://cdn.redoc.ly/redoc/logo-mini.svg"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:
    reason = _missing_browser()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class OffHostLog:
    """Requests the page tried to send anywhere but the server under test; each is aborted."""

    def __init__(self, server_url: str) -> None:
        self.host = urllib.parse.urlsplit(server_url).netloc
        self.blocked: list[str] = []

    def handle(self, route) -> None:  # type: ignore[no-untyped-def]
        url = route.request.url
        if urllib.parse.urlsplit(url).netloc == self.host or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


@pytest.fixture
def open_page(browser) -> Iterator:  # type: ignore[no-untyped-def]
    """Open a page of a server at a window size, off-host requests blocked; returns (page, OffHostLog)."""
    contexts = []

    def open_(server: Server, path: str, viewport: dict[str, int] = DESKTOP):  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        log = OffHostLog(server.url)
        context.route("**/*", log.handle)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server.url + path)
        page.script_errors = errors  # type: ignore[attr-defined]
        return page, log

    yield open_
    for context in contexts:
        context.close()


def _screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_swagger_ui_renders_every_operation_with_no_network(server: Server, client, open_page) -> None:
    page, log = open_page(server, "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    shown = set(page.locator(".opblock-summary-path").all_inner_texts())
    documented = set(client.get("/openapi.json").json()["paths"])
    assert {path.replace("\u200b", "") for path in shown} == documented
    assert log.blocked == []


def test_redoc_renders_its_operations_with_no_network(server: Server, open_page) -> None:
    page, log = open_page(server, "/redoc")
    page.locator("h2", has_text="Detect objects in one image or a list of images").wait_for(timeout=30_000)
    operations = page.locator("h2").all_inner_texts()
    assert "Load a model (downloading it first if needed)" in operations
    assert len(operations) >= 15
    # Only ReDoc's "API docs by Redocly" badge points off-host; blocked, it leaves the pages as they are.
    assert set(log.blocked) <= {REDOC_BADGE}


def _run_detection(page, photo: Path = PHOTO) -> dict:  # type: ignore[no-untyped-def]
    import json

    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.getElementById('preview').naturalWidth > 0")
    page.click("#run")
    page.wait_for_function("document.getElementById('json').textContent.length > 0", timeout=60_000)
    return json.loads(page.inner_text("#json"))


def test_playground_lists_the_model_and_draws_the_face_box_where_the_json_says(server: Server, open_page) -> None:
    page, log = open_page(server, "/")
    page.wait_for_selector("#model option[value='nudenet/1']", state="attached")
    assert page.locator("nav a").all_inner_texts() == ["API docs", "ReDoc", "Metrics"]
    result = _run_detection(page)
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
    stroke = 2 * max(result["image"]["width"], result["image"]["height"]) / 400 * scale  # the outline's width
    assert box["x"] + stroke / 2 == pytest.approx(photo["x"] + attributes["x"] * scale, abs=1.5)
    assert box["y"] + stroke / 2 == pytest.approx(photo["y"] + attributes["y"] * scale, abs=1.5)
    assert box["width"] - stroke == pytest.approx(face["width"] * scale, abs=1.5)
    assert page.inner_text("#timing-server").endswith(" ms")
    assert page.inner_text("#timing-image") == "512×512"
    assert page.locator("#error").is_hidden()
    assert log.blocked == [] and page.script_errors == []
    _screenshot(page, "playground-desktop")


def test_playground_is_usable_at_phone_width(server: Server, open_page) -> None:
    page, _ = open_page(server, "/", PHONE)
    page.wait_for_selector("#model option[value='nudenet/1']", state="attached")
    result = _run_detection(page)
    assert result["predictions"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    photo = page.locator("#preview").bounding_box()
    assert photo["x"] >= 0 and photo["x"] + photo["width"] <= PHONE["width"]
    run = page.locator("#run").bounding_box()
    assert run["width"] >= 200 and run["height"] >= 32  # a button a thumb can hit
    _screenshot(page, "playground-phone")


def test_playground_shows_a_readable_error_for_a_corrupt_image(server: Server, open_page, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(PHOTO.read_bytes()[:2000])
    page, _ = open_page(server, "/")
    page.wait_for_selector("#model option[value='nudenet/1']", state="attached")
    page.set_input_files("#file", str(corrupt))
    page.click("#run")
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    message = page.inner_text("#error")
    assert message.startswith("400: Could not load input image.") and "truncated or corrupt JPEG" in message
    assert page.locator("#overlay *").count() == 0
    _screenshot(page, "playground-error")


def test_playground_asks_for_the_key_and_sends_it_as_a_bearer_token(start_server, open_page) -> None:
    secured = start_server({"VISIONSERVE_API_KEYS": "sesame"})
    page, log = open_page(secured, "/")
    page.wait_for_selector("#key-form", state="visible")
    assert "needs an API key" in page.inner_text("#key-message")
    sent: list[str | None] = []
    page.on("request", lambda request: sent.append(request.headers.get("authorization")) if "/infer/" in request.url else None)
    page.fill("#api-key", "wrong")
    page.click("#key-form button")
    page.wait_for_function("document.getElementById('key-message').textContent.includes('not valid')")
    assert page.locator("#key-form").is_visible()
    page.fill("#api-key", "sesame")
    page.click("#key-form button")
    page.wait_for_selector("#model option[value='nudenet/1']", state="attached")
    assert _run_detection(page)["predictions"]
    assert sent == ["Bearer sesame"]
    assert log.blocked == []
    _screenshot(page, "playground-key")


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
    page.wait_for_selector(f"#model option[value='{model_id}']", state="attached")
    page.select_option("#model", model_id)
    if model_id.startswith("shapes-classify"):
        assert page.locator("#iou").is_hidden()  # options a classifier does not take are not offered
    result = _run_detection(page, FIXTURES / "images" / image)
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
    _screenshot(page, f"playground-{model_id.split('/')[0]}")
