"""The playground's Stream mode in a real browser (tests/browser_harness.py), against a server that needs an API key
(so the live feed, read with fetch() rather than EventSource, must carry it): a video uploaded in the page runs
through the fixture detector, annotated frames replace one another with FPS and latency shown, and Stop, leaving
the mode or closing the page terminates the pipeline; a URL the server's policy refuses shows the server's
message, as does an upload that is not a video."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser_harness import DESKTOP, PHONE, assert_clean, browser, choose_model, open_page, screenshot
from tests.conftest import Server, fixture_models_home
from tests.test_stream_pipelines import FRAMES, make_video

__all__ = ["browser", "open_page"]  # fixtures
KEY = "sesame"
MODEL = "shapes-detect/1"
MAX_FPS = 2  # 12 frames take 6 s: time to see several and stop before the video ends
REFUSED_URL = "http://127.0.0.1:9/clip.mp4"  # loopback: refused unless VISIONSERVE_URL_ALLOW_HOSTS names it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = fixture_models_home(tmp_path_factory.mktemp("stream-page-home"))
    running = Server(home, {"VISIONSERVE_API_KEYS": KEY}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as client:
        yield client


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("page-video") / "moving.mp4"
    make_video(path)
    return path


def open_stream_mode(server: Server, open_page, viewport: dict[str, int] = DESKTOP):  # type: ignore[no-untyped-def]
    """The page with the key already in this tab (the first load's 401, which asks for it, is left out of the log)."""
    page, log = open_page(server, "/", viewport)
    page.evaluate(f"sessionStorage.setItem('visionserve-api-key', '{KEY}')")
    page.reload()
    log.console_errors.clear()
    choose_model(page, MODEL)
    page.click("label[for='mode-stream']")
    page.wait_for_selector("#stream-file", state="visible")
    return page, log


def upload_in_page(page, video: Path) -> str:  # type: ignore[no-untyped-def]
    page.set_input_files("#stream-file", str(video))
    page.wait_for_function("() => document.getElementById('stream-reference').value.endsWith('.mp4')")
    return page.input_value("#stream-reference")


def start(page, video: Path) -> str:  # type: ignore[no-untyped-def]
    """Upload, Start, wait for the first annotated frame; the pipeline's id."""
    upload_in_page(page, video)
    page.fill("#stream-max-fps", str(MAX_FPS))
    page.click("#run")
    page.wait_for_function("() => document.getElementById('stream-frame').naturalWidth > 0", timeout=30_000)
    return page.inner_text("#stream-pipeline")


def pipelines(http: httpx.Client) -> list[str]:
    answer = http.get("/inference_pipelines/list")
    assert answer.status_code == 200, answer.text
    return answer.json()["pipelines"]


def wait_gone(http: httpx.Client, pipeline_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while pipeline_id in pipelines(http):
        assert time.monotonic() < deadline, f"pipeline {pipeline_id} is still listed"
        time.sleep(0.1)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_an_uploaded_video_streams_annotated_frames_until_stop(
    server: Server, http: httpx.Client, open_page, video: Path, viewport: dict[str, int]
) -> None:
    page, log = open_stream_mode(server, open_page, viewport)
    assert page.inner_text("#run") == "Start"
    assert page.locator("#file").is_hidden() and page.locator("#model").is_visible()
    reference = upload_in_page(page, video)
    assert Path(reference).parent == (server.home / "stream-uploads").resolve()
    assert Path(reference).read_bytes() == video.read_bytes()
    page.check("#stream-track")
    pipeline_id = start(page, video)
    assert pipelines(http) == [pipeline_id]

    first = page.get_attribute("#stream-frame", "src")
    assert first.startswith("data:image/jpeg;base64,")
    page.wait_for_function(f"() => document.getElementById('stream-frame').src !== {first!r}", timeout=10_000)
    page.wait_for_function("() => /^\\d/.test(document.getElementById('stream-fps').textContent)", timeout=10_000)
    assert 0 < float(page.inner_text("#stream-fps")) <= MAX_FPS * 1.5
    assert page.inner_text("#stream-latency").endswith(" ms")
    assert page.inner_text("#stream-dropped") == "0"
    assert page.locator("#stream-frame").evaluate("img => [img.naturalWidth, img.naturalHeight]") == [320, 320]
    shown = json.loads(page.inner_text("#json"))  # the latest event, less its picture
    assert "image" not in shown and shown["output"]["image"] == {"width": 320, "height": 320}
    assert shown["output"]["predictions"] and all("tracker_id" in p for p in shown["output"]["predictions"])
    screenshot(page, f"playground-stream-{viewport['width']}")

    page.click("#stream-stop")
    page.wait_for_function("() => document.getElementById('summary').textContent.startsWith('Stopped')")
    wait_gone(http, pipeline_id)
    assert int(page.inner_text("#stream-shown")) < FRAMES, "Stop came before the video's end"
    assert page.locator("#run").is_enabled() and page.locator("#stream-stop").is_disabled()
    assert page.locator("#error").is_hidden()
    assert_clean(page, log)


@pytest.mark.parametrize("leave", ["mode", "page"])
def test_leaving_the_mode_or_closing_the_page_terminates_the_pipeline(
    server: Server, http: httpx.Client, open_page, video: Path, leave: str
) -> None:
    page, log = open_stream_mode(server, open_page)
    pipeline_id = start(page, video)
    assert pipeline_id in pipelines(http)
    if leave == "mode":
        page.click("label[for='mode-model']")
        assert page.inner_text("#run") == "Run"
        wait_gone(http, pipeline_id)
        assert page.locator("#stream-frame").is_hidden()
        assert_clean(page, log)
    else:
        page.close()
        wait_gone(http, pipeline_id)


def test_a_url_refused_by_the_policy_and_an_upload_that_is_no_video_show_the_servers_message(
    server: Server, http: httpx.Client, open_page, tmp_path: Path
) -> None:
    direct = http.post("/inference_pipelines/initialise", json={"model_id": MODEL, "video_reference": REFUSED_URL})
    assert direct.status_code == 403
    message = direct.json()["message"]
    assert "VISIONSERVE_URL_ALLOW_HOSTS" in message

    page, log = open_stream_mode(server, open_page, PHONE)
    page.fill("#stream-reference", REFUSED_URL)
    page.click("#run")
    page.wait_for_selector("#error", state="visible")
    assert page.inner_text("#error") == f"403: {message}"
    assert page.locator("#key-form").is_hidden(), "a policy's 403 is not a wrong key"
    assert pipelines(http) == []
    screenshot(page, "playground-stream-refused")

    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 20)
    page.set_input_files("#stream-file", str(notes))
    page.wait_for_function("() => document.getElementById('error').textContent.includes('notes.mp4')")
    assert "400: The upload is not a video this server reads" in page.inner_text("#error")
    assert page.input_value("#stream-reference") == REFUSED_URL  # the reference is left as it was
    # The refusals' own failed requests are the only console errors.
    assert all("status of 4" in error for error in log.console_errors), log.console_errors
    log.console_errors.clear()
    assert_clean(page, log)
