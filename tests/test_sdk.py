"""visionserve's own Python client against a real server (and against small stand-ins for failure modes)."""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import Server, encode, photo, send_json
from visionserve.sdk import (
    HTTPCallErrorError,
    HTTPServerConnectionError,
    InferenceConfiguration,
    InferenceHTTPClient,
    ModelNotSelectedError,
    WrongClientModeError,
)
from visionserve.server_process import free_port


@pytest.fixture
def sdk(server: Server) -> Iterator[InferenceHTTPClient]:
    with InferenceHTTPClient(api_url=server.url + "/") as client:  # a trailing slash is fine
        yield client


def strip(result: dict) -> list[tuple]:
    return [(p["class"], round(p["confidence"], 3), p["x"], p["y"]) for p in result["predictions"]]


def test_every_kind_of_input(sdk: InferenceHTTPClient, tmp_path: Path, file_server: tuple) -> None:
    jpeg = encode(photo("astronaut"))
    path = tmp_path / "astronaut.jpg"
    path.write_bytes(jpeg)
    base_url, root = file_server
    (root / "sdk.jpg").write_bytes(jpeg)
    reference = strip(sdk.infer(str(path), model_id="nudenet/1"))
    assert reference and reference[0][0] == "FACE_FEMALE"
    same_bytes = [path, jpeg, base64.b64encode(jpeg).decode(), "data:image/jpeg;base64," + base64.b64encode(jpeg).decode(),
                  f"{base_url}/sdk.jpg"]
    for item in same_bytes:
        assert strip(sdk.infer(item, model_id="nudenet/1")) == reference
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    as_array = sdk.infer(decoded, model_id="nudenet/1")  # re-encoded as JPEG by the client
    assert as_array["predictions"][0]["class"] == "FACE_FEMALE"
    rgba = Image.fromarray(cv2.cvtColor(photo("logo"), cv2.COLOR_BGRA2RGBA))
    for image in (rgba, rgba.convert("P"), rgba.convert("L"), Image.fromarray(photo("camera"))):
        assert sdk.infer(image, model_id="nudenet/1")["image"] == {"width": image.size[0], "height": image.size[1]}


@pytest.mark.parametrize("bad", ["not/a/real/file.jpg", "notbase64atall!!", "aGVsbG8gd29ybGQ="])
def test_strings_that_are_no_image_raise_before_any_request(bad: str) -> None:
    client = InferenceHTTPClient(api_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    client._descriptions["nudenet/1"] = {"task_type": "object-detection"}
    with pytest.raises(ValueError, match="neither an existing file"):
        client.infer(bad, model_id="nudenet/1")


def test_batches_keep_input_order_with_batching_and_concurrency(sdk: InferenceHTTPClient) -> None:
    names = ["astronaut", "coffee", "chelsea", "rocket", "camera"]
    images = [photo(name) for name in names]
    singles = [sdk.infer(image, model_id="nudenet/1")["image"] for image in images]
    sdk.configure(InferenceConfiguration(max_batch_size=2, max_concurrent_requests=3))
    batched = sdk.infer(images, model_id="nudenet/1")
    assert [result["image"] for result in batched] == singles
    assert isinstance(sdk.infer([images[0]], model_id="nudenet/1"), list)
    from_async = asyncio.run(sdk.infer_async(images, model_id="nudenet/1"))
    assert [result["image"] for result in from_async] == singles


def test_options_reach_the_server(sdk: InferenceHTTPClient) -> None:
    image = photo("astronaut")
    with sdk.use_configuration(InferenceConfiguration(confidence_threshold=0.05, max_detections=2)):
        assert len(sdk.infer(image, model_id="nudenet/1")["predictions"]) == 2
    with sdk.use_configuration(InferenceConfiguration(class_filter=["NOPE"])):
        assert sdk.infer(image, model_id="nudenet/1")["predictions"] == []
    with sdk.use_model("nudenet/1"), sdk.use_configuration(
        InferenceConfiguration(visualize_predictions=True, output_visualisation_format="numpy")
    ):
        assert sdk.infer(image)["visualization"].shape == (512, 512, 3)
    with pytest.raises(ModelNotSelectedError):
        sdk.infer(image)


def test_client_side_downsizing_scales_predictions_back(sdk: InferenceHTTPClient) -> None:
    big = cv2.resize(photo("astronaut"), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    full = sdk.infer(big, model_id="nudenet/1")
    sdk.configure(InferenceConfiguration(client_downsizing_disabled=False))  # down to the model's 320x320
    small = sdk.infer(big, model_id="nudenet/1")
    assert small["image"] == full["image"] == {"width": 1024, "height": 1024}
    assert small["predictions"][0]["class"] == full["predictions"][0]["class"] == "FACE_FEMALE"
    for key in ("x", "y", "width", "height"):
        assert abs(small["predictions"][0][key] - full["predictions"][0][key]) < 12


def test_model_management_and_server_info(sdk: InferenceHTTPClient) -> None:
    assert sdk.get_server_info()["name"] == "visionserve"
    registry = sdk.load_model("nudenet/1", set_as_default=True)
    assert any(model["model_id"] == "nudenet/1" for model in registry["models"])
    assert sdk.selected_model == "nudenet/1"
    description = sdk.get_model_description("nudenet/1")
    assert description["task_type"] == "object-detection" and description["input_width"] == 320
    # Other tests of the session may have loaded models on this server: only nudenet/1 must be gone.
    assert "nudenet/1" not in [model["model_id"] for model in sdk.unload_model("nudenet/1")["models"]]
    sdk.load_model("nudenet/1")
    assert sdk.unload_all_models()["models"] == []
    with sdk.use_api_v0(), pytest.raises(WrongClientModeError):
        sdk.list_loaded_models()


def test_errors_carry_status_and_message(sdk: InferenceHTTPClient) -> None:
    with pytest.raises(HTTPCallErrorError) as raised:
        sdk.infer(photo("astronaut"), model_id="no-such/1")
    assert raised.value.status_code == 404 and "no-such/1" in raised.value.api_message


def test_legacy_mode(sdk: InferenceHTTPClient) -> None:
    sdk.api_key = "any-key"
    sdk.select_api_v0()
    result = sdk.infer([photo("astronaut"), photo("coffee")], model_id="nudenet/1")
    assert [r["image"]["width"] for r in result] == [512, 600]
    with sdk.use_configuration(InferenceConfiguration(format="image")):
        assert cv2.imdecode(np.frombuffer(base64.b64decode(sdk.infer(photo("astronaut"), "nudenet/1")["visualization"]),
                                          np.uint8), 1).shape == (512, 512, 3)


class Flaky:
    """A stand-in server: answers 503 a given number of times, then a fixed detection result; or sleeps."""

    def __init__(self, failures: int = 0, status: int = 503, delay_s: float = 0.0) -> None:
        self.calls = 0
        flaky = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                send_json(self, 200, {"models": [{"model_id": "m/1", "task_type": "object-detection"}]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                flaky.calls += 1
                time.sleep(delay_s)
                if flaky.calls <= failures:
                    return send_json(self, status, {"message": f"try later ({flaky.calls})"})
                send_json(self, 200, {"image": {"width": 1, "height": 1}, "predictions": []})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def test_retries_on_503_then_succeeds() -> None:
    flaky = Flaky(failures=2)
    try:
        result = InferenceHTTPClient(flaky.url).infer(photo("coins"), model_id="m/1")
        assert result["predictions"] == [] and flaky.calls == 3
    finally:
        flaky.close()


def test_gives_up_after_three_attempts_and_does_not_retry_other_errors() -> None:
    for status, expected_calls in ((503, 3), (500, 1)):
        flaky = Flaky(failures=10, status=status)
        try:
            with pytest.raises(HTTPCallErrorError) as raised:
                InferenceHTTPClient(flaky.url).infer(photo("coins"), model_id="m/1")
            assert raised.value.status_code == status and "try later" in raised.value.api_message
            assert flaky.calls == expected_calls
        finally:
            flaky.close()


def test_default_timeout_and_connection_errors() -> None:
    slow = Flaky(delay_s=3)
    try:
        started = time.monotonic()
        with pytest.raises(HTTPServerConnectionError):
            InferenceHTTPClient(slow.url, timeout=0.5).infer(photo("coins"), model_id="m/1")
        assert time.monotonic() - started < 6
    finally:
        slow.close()
    with pytest.raises(HTTPServerConnectionError):
        InferenceHTTPClient(f"http://127.0.0.1:{free_port()}").get_server_info()
