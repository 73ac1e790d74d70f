"""Webhook sink through a real server's /workflows/run: requests reach a loopback receiver only when the operator
allowed the host (VISIONSERVE_URL_ALLOW_HOSTS); otherwise loopback and the metadata address are refused with a clear
message while the run still answers."""

from __future__ import annotations

import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator

import cv2
import httpx
import pytest

from tests.conftest import Server, b64, send_json
from tests.test_workflows import DETECT

WIDTH = cv2.imread(str(DETECT[0])).shape[1]


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records every request; `/fail` answers 500."""

    received: list[dict] = []

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        parts = urllib.parse.urlsplit(self.path)
        self.received.append({"method": self.command, "path": parts.path, "query": urllib.parse.parse_qs(parts.query),
                              "headers": dict(self.headers), "body": self.rfile.read(length).decode()})  # fmt: skip
        send_json(self, 500 if parts.path == "/fail" else 200, {"ok": True})

    do_POST = do_PUT = do_GET = _record

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def sink_workflow(url: str, **options: object) -> dict:
    size = {"type": "roboflow_core/property_definition@v1", "name": "size", "data": "$inputs.image",
            "operations": [{"type": "ExtractImageProperty", "property_name": "width"}]}  # fmt: skip
    sink = {"type": "roboflow_core/webhook_sink@v1", "name": "hook", "url": url, "cooldown_seconds": 0,
            "json_payload": {"width": "$steps.size.output", "label": "$inputs.label", "fixed": [1, 2]},
            "query_parameters": {"source": "visionserve"}, "headers": {"X-Token": "$inputs.label"}, **options}
    return {"version": "1.0", "inputs": [{"type": "WorkflowImage", "name": "image"},
                                         {"type": "WorkflowParameter", "name": "label", "default_value": "hello"}],
            "steps": [size, sink], "outputs": [{"type": "JsonField", "name": "hook", "selector": "$steps.hook.*"}]}


def run(client: httpx.Client, spec: dict) -> dict:
    image = {"type": "base64", "value": b64(DETECT[0].read_bytes())}
    response = client.post("/workflows/run", json={"specification": spec, "inputs": {"image": image}})
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    return output["hook"]


def test_sends_the_payload_to_an_allowed_host(client: httpx.Client, receiver: str) -> None:
    Receiver.received.clear()
    answer = run(client, sink_workflow(f"{receiver}/hook", fire_and_forget=False))
    assert answer == {"error_status": False, "throttling_status": False, "message": "Notification sent successfully"}
    (request,) = Receiver.received
    assert request["method"] == "POST" and request["path"] == "/hook"
    assert request["query"] == {"source": ["visionserve"]}
    assert json.loads(request["body"]) == {"width": WIDTH, "label": "hello", "fixed": [1, 2]}
    assert request["headers"]["X-Token"] == "hello"
    assert request["headers"]["Host"] == receiver.removeprefix("http://")


def test_fire_and_forget_form_data_cooldown_and_failures(client: httpx.Client, receiver: str) -> None:
    Receiver.received.clear()
    spec = sink_workflow(f"{receiver}/form", method="PUT", json_payload={}, form_data={"width": "$steps.size.output"},
                         cooldown_seconds=30)  # fmt: skip
    assert run(client, spec)["message"] == "Notification sent in the background task"
    for _ in range(100):
        if Receiver.received:
            break
        time.sleep(0.05)
    (request,) = Receiver.received
    assert request["method"] == "PUT" and urllib.parse.parse_qs(request["body"]) == {"width": [str(WIDTH)]}
    assert run(client, spec) == {"error_status": False, "throttling_status": True, "message": "Sink cooldown applies"}
    assert len(Receiver.received) == 1  # the cooldown held the second send back
    failed = run(client, sink_workflow(f"{receiver}/fail", fire_and_forget=False))
    assert failed["error_status"] is True and "HTTP 500" in failed["message"]
    disabled = run(client, sink_workflow(f"{receiver}/hook", disable_sink=True))
    assert disabled["error_status"] is False and "disabled" in disabled["message"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::ffff:169.254.169.254]/", "file:///etc/passwd", "gopher://127.0.0.1/"])
def test_refuses_loopback_metadata_and_other_schemes_unless_allowed(fixture_server: Server, url: str) -> None:
    with fixture_server.client() as client:
        answer = run(client, sink_workflow(url, fire_and_forget=False))
    assert answer["error_status"] is True, answer
    if url.startswith("http://"):
        assert "not allowed" in answer["message"] and "VISIONSERVE_URL_ALLOW_HOSTS" in answer["message"]
    else:
        assert "is not an http:// or https:// URL" in answer["message"]


def test_background_sends_are_bounded(client: httpx.Client) -> None:
    """Fire-and-forget sends to a webhook that never answers, with no cooldown: at most MAX_BACKGROUND wait or run,
    the rest are refused at once (before, every one was queued, without bound)."""
    from tests.dripping_server import DrippingServer
    from visionserve.workflows.blocks.webhook_sink import MAX_BACKGROUND

    stalling = DrippingServer(pause_s=1.0)
    try:
        spec = sink_workflow(stalling.url, request_timeout=2)  # the pool is free again 2 s x 64 / 4 threads later
        image = {"type": "base64", "value": b64(DETECT[0].read_bytes())}
        answers = []
        for _ in range(2):
            response = client.post("/workflows/run", json={"specification": spec, "inputs": {"image": [image] * 40}})
            assert response.status_code == 200, response.text
            answers += [output["hook"] for output in response.json()["outputs"]]
        refused = [answer for answer in answers if answer["error_status"]]
        assert len(refused) == len(answers) - MAX_BACKGROUND
        assert all(f"{MAX_BACKGROUND} webhook notifications are already waiting" in a["message"] for a in refused)
    finally:
        stalling.listener.close()
