"""The playground's finer points in a real browser (tests/browser_harness.py): labels a person can read on any photo
at any window size, whole model names, which model it starts with, what an empty answer or a wrong file says."""

from __future__ import annotations

from pathlib import Path

import cv2
import httpx
import pytest

from tests.browser_harness import (
    DESKTOP, PHONE, PHOTO, assert_clean, browser, choose_model, open_page, run_detection, screenshot,
)  # fmt: skip
from tests.conftest import FIXTURES, Server, b64
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.store import ModelStore

__all__ = ["browser", "open_page"]  # fixtures
READABLE_PX = (11, 24)  # the height of a label's text on screen, in CSS pixels
# Each label's on-screen height, and its fill beside its box's outline, as the browser renders them.
_LABELS = """() => [...document.querySelectorAll('#overlay text')].map((text) => {
  const box = text.previousElementSibling, shown = text.getBoundingClientRect();
  const photo = document.getElementById('preview').getBoundingClientRect();
  return { height: shown.height, fill: getComputedStyle(text).fill, stroke: box ? getComputedStyle(box).stroke : null,
           inside: shown.left >= photo.left - 1 && shown.right <= photo.right + 1 };
})"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """A 3:2 fixture image scaled to 320 and to 8000 pixels wide (8000×5333, under the server's pixel limit)."""
    folder = tmp_path_factory.mktemp("photos")
    pixels = cv2.imread(str(FIXTURES / "images" / "detect_4.jpg"))
    made = {}
    for width in (320, 8000):
        made[width] = folder / f"shapes-{width}.jpg"
        scaled = cv2.resize(pixels, (width, width * 2 // 3), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(made[width]), scaled, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return made


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("width", [320, 8000])
def test_labels_are_readable_and_in_their_class_colour_on_any_photo(
    fixture_server: Server, open_page, photos: dict[int, Path], width: int, viewport: dict[str, int]
) -> None:
    page, log = open_page(fixture_server, "/", viewport)
    choose_model(page, "shapes-detect/1")
    result = run_detection(page, photos[width])
    labels = page.evaluate(_LABELS)
    assert len(labels) == len(result["predictions"]) > 0
    for label in labels:
        assert READABLE_PX[0] <= label["height"] <= READABLE_PX[1], label
        assert label["fill"] == label["stroke"] and label["fill"] != "rgb(255, 255, 255)", label
        assert label["inside"], label  # a label near the edge is moved, not cut off
    assert_clean(page, log)
    screenshot(page, f"playground-labels-{width}-{viewport['width']}")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_model_list_shows_whole_names(fixture_server: Server, open_page, viewport: dict[str, int]) -> None:
    page, _ = open_page(fixture_server, "/", viewport)
    page.wait_for_selector("#model option[value='shapes-detect-v5classic/1']", state="attached")
    cut = page.evaluate(
        """() => {
          const select = document.getElementById('model');
          const style = getComputedStyle(select);
          const context = document.createElement('canvas').getContext('2d');
          context.font = style.font;
          const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 24;
          return [...select.options].map((option) => option.text)
            .filter((text) => context.measureText(text).width > room);
        }"""
    )
    assert cut == []


def test_it_starts_with_the_neutral_model_and_shows_a_models_classes_only_once_chosen(
    server: Server, open_page
) -> None:
    page, log = open_page(server, "/")
    page.wait_for_selector("#model option[value='nudenet/1']", state="attached")
    assert page.input_value("#model") == "shapes/1"
    assert "3 classes\ncircle, square, triangle" in page.inner_text("#model-info")
    assert "FEMALE" not in page.content()  # not in the page at all, not even hidden
    page.select_option("#model", "nudenet/1")
    assert "FACE_FEMALE" not in page.inner_text("#model-info")  # a long list stays folded until asked for
    page.click("#model-info summary")
    assert "FACE_FEMALE, BUTTOCKS_EXPOSED" in page.inner_text("#model-info")
    page.reload()  # the last model used comes back
    page.wait_for_selector("#model option[value='nudenet/1']", state="attached")
    assert page.input_value("#model") == "nudenet/1"
    assert_clean(page, log)


def test_a_model_held_only_in_memory_is_marked_and_never_the_default(start_server, open_page, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = ModelStore(home / "models")
    import_model(store, FIXTURES / "models" / "shapes-detect.onnx", "gone/1", ManifestOverrides())
    server = start_server(home=home)
    with server.client() as client:
        assert client.post("/model/add", json={"model_id": "gone/1"}).status_code == 200
    store.remove("gone/1")  # `visionserve models remove`, while this server still holds it
    page, _ = open_page(server, "/")
    page.wait_for_selector("#model option[value='gone/1']", state="attached")
    assert page.input_value("#model") == "shapes/1"
    assert "memory only" in page.locator("#model option[value='gone/1']").inner_text()
    page.select_option("#model", "gone/1")
    assert "removed from the store" in page.inner_text("#model-info")


def test_an_answer_with_no_predictions_says_why(server: Server, open_page) -> None:
    page, _ = open_page(server, "/")
    choose_model(page, "nudenet/1")
    page.locator("#confidence").fill("0.99")
    result = run_detection(page)
    assert result["predictions"] == []
    assert "No predictions above confidence 0.99" in page.inner_text("#summary")


def test_a_file_that_is_no_image_gets_the_apis_own_message(
    server: Server, client: httpx.Client, open_page, tmp_path: Path
) -> None:
    page, _ = open_page(server, "/")
    choose_model(page, "nudenet/1")
    for name in ("notes.txt", "notes.json", "scan.pdf"):  # whatever type the browser gives the file
        wrong = tmp_path / name
        wrong.write_bytes(b"this is a shopping list, not a photo\n")
        body = {"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(wrong.read_bytes())}}
        api_message = client.post("/infer/object_detection", json=body).json()["message"]
        assert "Data is not an image" in api_message
        page.set_input_files("#file", str(wrong))
        page.click("#run")
        page.wait_for_selector("#error", state="visible", timeout=60_000)
        assert page.inner_text("#error") == f"400: {api_message}", name
    # And a photo whose name says nothing of its type still runs.
    unnamed = tmp_path / "photo"
    unnamed.write_bytes(PHOTO.read_bytes())
    assert run_detection(page, unnamed)["predictions"]
