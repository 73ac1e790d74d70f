"""Results POSTed as JSON to a URL, per frame (`result_record`) or per batch (`{"results": [record | None, ...]}`,
one entry per source).

The URL passes the destination policy of the workflow webhook sink (`webhooks.checked_url`: http(s) only,
public addresses unless the operator allowed the host in VISIONSERVE_URL_ALLOW_HOSTS, the connection pinned to the
checked address); it is checked when the sink is made (a refused URL fails the pipeline's creation) and again
before each request, so a long-lived pipeline follows DNS changes without escaping the policy. Requests go out
through that sink's client (no redirects followed, `timeout_s` as one deadline for the whole exchange) from one
thread of this sink behind a bounded queue: the oldest waiting requests are dropped (counted) when the receiver
is slower than the stream. Failures are counted and the last one kept in the status.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from typing import Any, Literal

import orjson

from visionserve.http_deadline import deadline
from visionserve.streams.frames import FrameResult
from visionserve.streams.sinks.base import CLOSE_S, DropOldestQueue, result_record, stop_worker
from visionserve.webhooks import SinkRefused, build_request, checked_url, send

_HEADERS = {"Content-Type": "application/json"}  # the client adds its User-Agent


class WebhookSink:
    def __init__(self, url: str, per: Literal["frame", "batch"] = "frame", allow_hosts: Collection[str] = (),
                 timeout_s: float = 5.0, max_queue: int = 64) -> None:  # fmt: skip
        """Raises `SinkRefused` (with the reason) for a URL the policy refuses."""
        if per not in ("frame", "batch"):
            raise ValueError("per must be 'frame' or 'batch'")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        self._allow_hosts = frozenset(host.lower() for host in allow_hosts)
        self._host = checked_url(url, self._allow_hosts).headers["Host"]
        self._url, self._per, self._timeout = url, per, timeout_s
        self._queue: DropOldestQueue[bytes] = DropOldestQueue(max_queue)
        self._lock = threading.Lock()
        self._sent = self._failed = 0
        self._last_error: str | None = None
        self._close_by: float | None = None  # monotonic time by which the worker must be done
        self._worker = threading.Thread(target=self._run, name="visionserve-webhook-sink", daemon=True)
        self._worker.start()

    def put(self, results: Sequence[FrameResult | None]) -> None:
        records = [None if result is None else result_record(result) for result in results]
        if self._per == "batch":
            self._queue.offer(orjson.dumps({"results": records}, option=orjson.OPT_SERIALIZE_NUMPY))
            return
        for record in records:
            if record is not None:
                self._queue.offer(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY))

    def close(self) -> None:
        """Sends what is queued while time is left (within `CLOSE_S` in all), drops the rest (counted)."""
        self._close_by = time.monotonic() + CLOSE_S * 0.9
        stop_worker(self._queue, self._worker)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"type": "webhook", "host": self._host, "per": self._per, "sent": self._sent,
                    "failed": self._failed, "dropped": self._queue.dropped, "queued": len(self._queue),
                    "last_error": self._last_error}  # fmt: skip

    def _run(self) -> None:
        while (body := self._queue.take()) is not None:
            timeout = self._timeout
            if self._close_by is not None:
                timeout = min(timeout, self._close_by - time.monotonic())
                if timeout <= 0:
                    self._queue.discard()
                    continue
            failed, message = self._post(body, timeout)
            with self._lock:
                if failed:
                    self._failed += 1
                    self._last_error = message
                else:
                    self._sent += 1

    def _post(self, body: bytes, timeout: float) -> tuple[bool, str]:
        try:
            with deadline(timeout):  # the name resolution too
                target = checked_url(self._url, self._allow_hosts)
        except SinkRefused as error:
            return True, str(error)
        return send(build_request("POST", target, _HEADERS, content=body), timeout)
