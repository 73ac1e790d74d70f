"""Webhook sink: a request to a URL with values of the run (JSON body, form or multipart fields, query, headers).

The URL passes the same destination policy as image URLs: http(s) only, and public addresses only unless the
operator allowed the host (VISIONSERVE_URL_ALLOW_HOSTS); the connection goes to the checked address (no DNS
rebinding) and redirects are not followed. The whole exchange keeps `request_timeout` as one deadline. A refused
or failed request is reported in `error_status` / `message`: the run itself still answers.

With `fire_and_forget` the checked request is sent on a small pool of its own and the step does not wait for it;
at most `MAX_BACKGROUND` such sends wait or run at once (beyond: `error_status`, nothing queued), so definitions
with no cooldown cannot queue requests without bound. `cooldown_seconds` skips sends that come sooner than that
after the last one of the same step of the definition; the last `MAX_COOLDOWNS` steps are remembered.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
from pydantic import Field

from visionserve.netpolicy import PinnedUrl
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import (
    BlockManifest, BlockSpec, Output, StepContext, StepInputs, per_element, selector,
)  # fmt: skip
from visionserve.workflows.blocks.expression import named_values
from visionserve.workflows.operations.language import Operation
from visionserve.workflows.serialize import serialised_value
from visionserve.webhooks import SinkRefused, build_request, checked_url, send

Values = dict[str, selector(kinds.WILDCARD) | str | int | float | bool | None | list | dict]  # type: ignore[valid-type]
Operations = dict[str, list[Operation]]

MAX_BACKGROUND = 64
MAX_COOLDOWNS = 4096
_background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="visionserve-webhook")
_background_slots = threading.BoundedSemaphore(MAX_BACKGROUND)
_last_sent: OrderedDict[tuple[str, str], float] = OrderedDict()
_last_sent_lock = threading.Lock()


class WebhookSinkManifest(BlockManifest):
    type: Literal["roboflow_core/webhook_sink@v1", "WebhookSink"]
    url: str | selector(kinds.STRING)  # type: ignore[valid-type]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    query_parameters: Values = Field(default_factory=dict)
    headers: Values = Field(default_factory=dict)
    json_payload: Values = Field(default_factory=dict)
    json_payload_operations: Operations = Field(default_factory=dict)
    multi_part_data: Values = Field(default_factory=dict)
    multi_part_data_operations: Operations = Field(default_factory=dict)
    form_data: Values = Field(default_factory=dict)
    form_data_operations: Operations = Field(default_factory=dict)
    request_timeout: float | selector(kinds.FLOAT) = Field(2.0, gt=0, le=60)  # type: ignore[valid-type]
    fire_and_forget: bool | selector(kinds.BOOLEAN) = True  # type: ignore[valid-type]
    disable_sink: bool | selector(kinds.BOOLEAN) = False  # type: ignore[valid-type]
    cooldown_seconds: float | selector(kinds.FLOAT) = Field(5.0, ge=0)  # type: ignore[valid-type]


def _fields(values: dict[str, Any], operations: Operations) -> dict[str, Any]:
    return serialised_value(named_values(values, operations))


def _request(step: WebhookSinkManifest, inputs: StepInputs, target: PinnedUrl) -> httpx.Request:
    as_text = {name: str(value) for name, value in serialised_value(inputs["headers"]).items()}
    form = {name: str(v) for name, v in _fields(inputs["form_data"], step.form_data_operations).items()}
    multi_part = _fields(inputs["multi_part_data"], step.multi_part_data_operations)
    parts = {name: (None, str(value)) for name, value in multi_part.items()}
    payload = _fields(inputs["json_payload"], step.json_payload_operations)
    body: dict[str, Any] = {"files": parts, "data": form} if parts else {"data": form} if form else {}
    if payload and not parts and not form:
        body = {"json": payload}
    return build_request(step.method, target, as_text, params=serialised_value(inputs["query_parameters"]), **body)


def _cooling(key: tuple[str, str], cooldown: float) -> bool:
    """True when the last send of this step was less than `cooldown` seconds ago; else books this send."""
    with _last_sent_lock:
        now = time.monotonic()
        if now - _last_sent.get(key, -float("inf")) < cooldown:
            return True
        _last_sent[key] = now
        _last_sent.move_to_end(key)
        if len(_last_sent) > MAX_COOLDOWNS:
            _last_sent.popitem(last=False)
        return False


def notify(step: WebhookSinkManifest, inputs: StepInputs, context: StepContext) -> dict[str, Any]:
    def answer(error: bool, message: str, throttled: bool = False) -> dict[str, Any]:
        return {"error_status": error, "throttling_status": throttled, "message": message}

    if inputs["disable_sink"] is True:
        return answer(False, "Sink was disabled by parameter `disable_sink`")
    try:
        target = checked_url(inputs["url"], context.url_allow_hosts)
    except SinkRefused as error:
        return answer(True, str(error))
    if _cooling((context.workflow_key, step.name), float(inputs["cooldown_seconds"])):
        return answer(False, "Sink cooldown applies", throttled=True)
    request = _request(step, inputs, target)
    timeout = float(inputs["request_timeout"])
    if inputs["fire_and_forget"] is True:
        if not _background_slots.acquire(blocking=False):
            return answer(True, f"Not sent: {MAX_BACKGROUND} webhook notifications are already waiting or on their way")
        _background.submit(send, request, timeout).add_done_callback(lambda _: _background_slots.release())
        return answer(False, "Notification sent in the background task")
    return answer(*send(request, timeout))


BLOCK = BlockSpec(
    WebhookSinkManifest,
    (Output("error_status", (kinds.BOOLEAN,)), Output("throttling_status", (kinds.BOOLEAN,)),
     Output("message", (kinds.STRING,))),
    per_element(notify), human_name="Webhook Sink",
)  # fmt: skip
