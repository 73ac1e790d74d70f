"""What a new user met over HTTP, following the hosted API's documentation: a JSON body on the legacy route, a
pickled array as the body, a typo in a route, a truncated JPEG, and the front page."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import b64, photo
from tests.test_api_detection import without_ids
from visionserve.server_process import free_port

ASTRONAUT = (Path(__file__).parent.parent / "visionserve" / "assets" / "astronaut.jpg").read_bytes()
TRUNCATED_JPEG = ASTRONAUT[: len(ASTRONAUT) // 2]


def infer_v2(client: httpx.Client, **fields: object) -> httpx.Response:
    body = {"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(ASTRONAUT)}, **fields}
    return client.post("/infer/object_detection", json=body)


# --- the legacy route takes the documentation's JSON body ---


def test_legacy_route_reads_a_json_request_with_v2_fields(client: httpx.Client) -> None:
    body = {"image": {"type": "base64", "value": b64(ASTRONAUT)}, "confidence": 0.75, "iou_threshold": 0.5,
            "api_key": "ignored-here"}  # fmt: skip
    response = client.post("/nudenet/1", json=body)
    assert response.status_code == 200, response.text
    expected = without_ids(infer_v2(client, confidence=0.75, iou_threshold=0.5).json())
    assert without_ids(response.json()) == expected
    strict = client.post("/nudenet/1", json={**body, "confidence": 0.9}).json()
    assert strict["predictions"] == []  # the body's options are used, not the query's defaults


def test_legacy_route_answers_a_json_list_of_images_with_a_list(client: httpx.Client, file_server) -> None:
    base_url, root = file_server
    (root / "first-use.jpg").write_bytes(ASTRONAUT)
    images = [{"type": "url", "value": f"{base_url}/first-use.jpg"}, {"type": "base64", "value": b64(ASTRONAUT)}]
    response = client.post("/nudenet/1", json={"image": images})
    assert response.status_code == 200, response.text
    answers = response.json()
    assert isinstance(answers, list) and len(answers) == 2
    assert without_ids(answers[0]) == without_ids(answers[1]) == without_ids(infer_v2(client).json())


def test_legacy_route_says_what_a_json_body_lacks(client: httpx.Client) -> None:
    response = client.post("/nudenet/1", json={"img": "x"})
    assert response.status_code == 400
    assert "`image`" in response.json()["message"] and "image: Field required" in response.json()["message"]


def test_legacy_route_still_takes_base64_text_sent_as_json(client: httpx.Client) -> None:
    response = client.post("/nudenet/1", content=b64(ASTRONAUT), headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and without_ids(response.json()) == without_ids(infer_v2(client).json())


# --- a pickled array as the body, without image_type ---


def test_a_pickled_array_body_is_recognised_when_numpy_input_is_on(start_server) -> None:
    pixels = photo("astronaut")
    with start_server({"VISIONSERVE_ALLOW_NUMPY_INPUT": "1"}).client() as client:
        for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
            response = client.post("/nudenet/1", content=pickle.dumps(pixels, protocol=protocol))
            assert response.status_code == 200, (protocol, response.text)
            assert response.json()["image"] == {"width": 512, "height": 512}


def test_a_pickled_array_body_when_numpy_input_is_off_says_so_and_how_to_allow_it(client: httpx.Client) -> None:
    response = client.post("/nudenet/1", content=pickle.dumps(photo("astronaut")))
    assert response.status_code == 400
    message = response.json()["message"]
    assert "looks like a pickled numpy array" in message and "VISIONSERVE_ALLOW_NUMPY_INPUT=1" in message


# --- typos in routes ---


@pytest.mark.parametrize(
    ("method", "path", "named"),
    [
        ("POST", "/infer/object_detections", "POST /infer/object_detection"),
        ("POST", "/model/registr", "GET /model/registry"),
        ("GET", "/docs/index", "GET /docs"),
    ],
)
def test_a_typo_in_a_route_is_a_404_naming_the_real_routes(client: httpx.Client, method: str, path: str,
                                                            named: str) -> None:  # fmt: skip
    response = client.request(method, path, json={"model_id": "nudenet/1", "image": {"type": "base64", "value": ""}})
    assert response.status_code == 404 and "Retry-After" not in response.headers
    message = response.json()["message"]
    assert message.startswith(f"No route {method} {path}") and named in message


def test_an_unknown_model_with_the_weights_api_unreachable_names_the_model(start_server) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    with start_server({"VISIONSERVE_WEIGHTS_API": unreachable}).client() as client:
        response = client.post("/no-such-project/3", content=b64(ASTRONAUT))
    assert response.status_code == 404  # nothing says the API has it: not found, not an outage
    message = response.json()["message"]
    assert "Model 'no-such-project/3' not found" in message and unreachable in message


# --- truncated images ---


def test_a_truncated_jpeg_is_called_so(client: httpx.Client) -> None:
    response = client.post("/infer/object_detection",
                           json={"model_id": "nudenet/1", "image": {"type": "base64", "value": b64(TRUNCATED_JPEG)}})  # fmt: skip
    assert response.status_code == 400
    assert "truncated or corrupt JPEG" in response.json()["message"]


def test_bytes_of_no_image_format_are_still_called_so(client: httpx.Client) -> None:
    response = client.post("/nudenet/1", content=b"\x00\x01 plainly not an image \xff")
    assert response.status_code == 400 and "no image format" in response.json()["message"]


# --- the front page and offline documentation ---


def test_the_front_page_is_the_playground_and_loads_nothing_from_elsewhere(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "playground" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)
    for path in ("/playground/playground.js", "/playground/playground.css"):
        asset = client.get(path)
        assert asset.status_code == 200
        text = asset.text.replace("http://www.w3.org/2000/svg", "")  # SVG's namespace name, never fetched
        assert "http://" not in text and "https://" not in text


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_documentation_pages_load_their_assets_from_this_server(client: httpx.Client, page: str) -> None:
    html = client.get(page).text
    assert "cdn." not in html and "fonts.googleapis" not in html
    for asset in ("/static-offline-docs/swagger-ui-bundle.js",) if page == "/docs" else (
        "/static-offline-docs/redoc.standalone.js",
    ):  # fmt: skip
        assert asset in html and client.get(asset).status_code == 200


def test_the_catalog_lists_stored_and_built_in_models_with_their_route(client: httpx.Client) -> None:
    models = {model["model_id"]: model for model in client.get("/model/catalog").json()["models"]}
    assert models["nudenet/1"]["infer_path"] == "/infer/object_detection"
    assert models["nudenet/1"]["source"] == "built in"


def test_with_api_keys_the_page_and_its_assets_are_open_but_the_catalog_is_not(start_server) -> None:
    with start_server({"VISIONSERVE_API_KEYS": "sesame"}).client() as client:
        for path in ("/", "/playground/playground.js", "/docs", "/static-offline-docs/swagger-ui.css"):
            assert client.get(path).status_code == 200, path
        assert client.get("/model/catalog").status_code == 401
        authorized = client.get("/model/catalog", headers={"Authorization": "Bearer sesame"})
        assert authorized.status_code == 200


def test_a_jpeg_posted_to_a_json_route_is_a_422_not_a_500(client: httpx.Client) -> None:
    response = client.post("/infer/object_detection", content=ASTRONAUT[:200], headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 422 and response.json()["detail"]
