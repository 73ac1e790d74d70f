"""Client for a Roboflow-compatible weights API, and the downloads it points to.

Protocol (the reference's): `GET {base}/ort/{project}/{version}?api_key=...` answers `{"ort": {"type", "modelType",
"model": <weights URL>, "environment": <environment.json URL>, "classes", "colors", "keypoints_metadata"}}`;
one-segment ids use `GET {base}/getWeights?model=...` with `modelFiles.ort.model` and an inline `environment`.

Downloads go to a `.partial` file, resume with a Range request after a transient failure, are checked against the
announced size and MD5 (`x-goog-hash`), and only then renamed into place.

The API is trusted no further than it must be: replies are capped in size (JSON and weights), every exchange keeps
a wall-clock deadline, weights URLs and redirects go to public addresses only (the API's own host and operator-listed
hosts excepted), a failed lookup is remembered for a while instead of retried by every request, and a reply of the
wrong shape is a 502, never a 500.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from visionserve import __version__
from visionserve.errors import InsufficientStorageError, ModelNotFoundError, VisionServeError
from visionserve.http_deadline import deadline, deadline_transport
from visionserve.models.manifest import WEIGHTS_FILE
from visionserve.models.roboflow import ENVIRONMENT_FILE
from visionserve.models.remote_description import RemoteModel, from_get_weights, from_ort, ort_files
from visionserve.models.weights_api_errors import (
    WeightsApiBadResponse,
    WeightsApiForbidden,
    WeightsApiKeyRejected,
    WeightsApiTimeout,
    WeightsApiUnavailable,
    WeightsApiUnreachable,
)
from visionserve.netpolicy import DestinationRefused, UnresolvableHost, checked_address

logger = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes if known)
NO_KEY_VALUES = frozenset({"", "local", "none", "null"})


def usable_key(api_key: str | None) -> str | None:
    """None for no key; the reference treats an empty key and the literal `local` as no key."""
    if api_key is None or api_key.strip().lower() in NO_KEY_VALUES:
        return None
    return api_key.strip()


class _Transient(Exception):
    """A failure worth retrying: connection trouble, a timeout, 5xx or 429."""


def _md5_from_headers(headers: httpx.Headers) -> bytes | None:
    for part in headers.get("x-goog-hash", "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "md5" and value:
            try:
                return base64.b64decode(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class WeightsApiLimits:
    max_json_bytes: int = 16 * 1024 * 1024  # a description or environment.json
    max_model_bytes: int = 2 * 1024**3  # the weights
    download_timeout_s: float = 3600.0  # one weights download, all attempts together
    failed_lookup_ttl_s: float = 10.0  # an unreachable API is not asked again for the same model before this
    allow_hosts: frozenset[str] = frozenset()  # besides the API's own host, exempt from the public-address rule


class WeightsApi:
    def __init__(
        self,
        base_url: str,
        timeout_s: float = 30.0,
        attempts: int = 3,
        backoff_s: float = 0.5,
        limits: WeightsApiLimits | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.limits = limits or WeightsApiLimits()
        self._allow_hosts = self.limits.allow_hosts | {httpx.URL(self.base_url).host.lower()}
        self._failed: dict[str, tuple[float, VisionServeError]] = {}  # model id → (until, the failure)
        self._failed_lock = threading.Lock()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            headers={"User-Agent": f"visionserve/{__version__}", "X-Roboflow-Inference-Version": __version__},
            transport=deadline_transport(),
            event_hooks={"request": [self._check_destination]},
        )

    def close(self) -> None:
        self._client.close()

    def _check_destination(self, request: httpx.Request) -> None:
        """Every request, redirects included, goes to the API's host, an allowed host, or a public address."""
        host = request.url.host.lower()
        try:
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            checked_address(host, port, self._allow_hosts, "VISIONSERVE_WEIGHTS_API_ALLOW_HOSTS")
        except DestinationRefused as error:
            raise WeightsApiBadResponse(f"The weights API pointed to a destination that is not allowed: {error}") from None
        except UnresolvableHost as error:
            raise httpx.ConnectError(str(error)) from None

    # --- model description ---

    def describe(self, model_id: str, api_key: str | None) -> RemoteModel:
        """The model's description; an unreachable API is remembered per model for `failed_lookup_ttl_s`, so
        requests for it fail at once instead of each holding a worker through the retries."""
        with self._failed_lock:
            until, failure = self._failed.get(model_id, (0.0, None))
        if failure is not None and time.monotonic() < until:
            raise failure
        try:
            return self._describe(model_id, api_key)
        except (WeightsApiUnavailable, WeightsApiTimeout) as error:
            with self._failed_lock:
                self._failed[model_id] = (time.monotonic() + self.limits.failed_lookup_ttl_s, error)
            raise

    def _describe(self, model_id: str, api_key: str | None) -> RemoteModel:
        key = usable_key(api_key)
        auth = {"api_key": key} if key else {}
        if "/" in model_id:
            project, version = model_id.split("/")
            params = {**auth, "nocache": "true", "device": socket.gethostname(), "dynamic": "true"}
            ort = ort_files(self._get_json(f"{self.base_url}/ort/{project}/{version}", params, model_id))
            return from_ort(ort, self._get_json(str(ort["environment"]), {}, file=ENVIRONMENT_FILE))
        payload = self._get_json(f"{self.base_url}/getWeights", {**auth, "model": model_id}, model_id)
        return from_get_weights(payload)

    def _get_json(
        self, url: str, params: Mapping[str, str], model_id: str | None = None, file: str | None = None
    ) -> Mapping[str, Any]:
        """A model's description (`model_id`: a 404 means no such model) or a package `file` (a 404 means the
        package is broken)."""
        what = file or "model description"

        def attempt() -> Mapping[str, Any]:
            with self._client.stream("GET", url, params=params) as response:
                self._raise_for_status(response, model_id, file)
                body = self._read_capped(response, self.limits.max_json_bytes, what)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise WeightsApiBadResponse(f"The weights API answered a {what} that is not JSON.") from None
            if not isinstance(payload, Mapping):
                raise WeightsApiBadResponse(f"The weights API answered a {what} that is not a JSON object.")
            return payload

        with deadline(self.timeout_s):  # all attempts together; no sleeping in a request's worker
            return self._with_retries(attempt, pause=False)

    @staticmethod
    def _read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
        declared = response.headers.get("content-length", "")
        chunks, size = [], 0
        if declared.isdigit() and int(declared) > limit:
            raise WeightsApiBadResponse(f"The weights API announced a {what} of {declared} bytes, over {limit}.")
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise WeightsApiBadResponse(f"The weights API sent a {what} larger than {limit} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    def _raise_for_status(self, response: httpx.Response, model_id: str | None, file: str | None = None) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 401:
            raise WeightsApiKeyRejected()
        if status == 403:
            raise WeightsApiForbidden()
        if status == 404 and model_id is not None:
            raise ModelNotFoundError(model_id)
        if status == 404:
            raise WeightsApiBadResponse(f"The model's {file} is missing at the weights API (HTTP 404).")
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        raise WeightsApiBadResponse(f"The weights API refused the request with HTTP {status}.")

    def _with_retries(self, call: Callable[[], Any], pause: bool = True) -> Any:
        """Retry transient failures (with exponential backoff when `pause`); the last one becomes a 503 or 504."""
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except httpx.InvalidURL:
                raise WeightsApiBadResponse("The weights API answered with a URL that is not valid.") from None
            except httpx.TimeoutException:
                failure: Exception = WeightsApiTimeout(
                    f"Timeout when attempting to reach the weights API at {self.base_url} ({self.timeout_s:g} s)."
                )
            except httpx.ConnectError as error:
                failure = WeightsApiUnreachable(
                    f"Could not reach the weights API at {self.base_url} ({error}); retry later.", self.base_url
                )
            except (httpx.TransportError, _Transient) as error:
                failure = WeightsApiUnavailable(
                    f"Could not reach the weights API at {self.base_url} ({error or type(error).__name__}); "
                    "retry later."
                )
            if attempt < self.attempts and pause:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise failure

    # --- downloads ---

    def download(self, url: str, destination: Path, progress: Progress | None = None) -> None:
        """Fetch `url` into `destination` atomically, resuming after transient failures. The API described the
        model, so a connection failure here is an outage (503), never a sign that the model does not exist."""
        partial = destination.with_name(destination.name + ".partial")
        expected_md5: list[bytes | None] = [None]
        try:
            with deadline(self.limits.download_timeout_s):
                try:
                    self._with_retries(lambda: self._download_once(url, partial, expected_md5, progress))
                except WeightsApiUnreachable as error:
                    raise WeightsApiUnavailable(error.message) from None
            if expected_md5[0] is not None and _md5_of(partial) != expected_md5[0]:
                raise WeightsApiBadResponse("The downloaded weights do not match their announced MD5 checksum.")
            os.replace(partial, destination)
        finally:
            partial.unlink(missing_ok=True)

    def _download_once(
        self, url: str, partial: Path, expected_md5: list[bytes | None], progress: Progress | None
    ) -> None:
        done = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={done}-"} if done else {}
        with self._client.stream("GET", url, headers=headers) as response:
            if response.status_code == 416:  # nothing left to fetch, or a stale partial file: start over
                partial.unlink(missing_ok=True)
                raise _Transient("HTTP 416")
            self._raise_for_status(response, None, WEIGHTS_FILE)
            if response.status_code == 200:
                done = 0  # the server ignored the Range header: the body is the whole file
                expected_md5[0] = _md5_from_headers(response.headers)
            length = response.headers.get("content-length", "")
            total = done + int(length) if length.isdigit() else None
            limit = self.limits.max_model_bytes
            if total is not None and total > limit:
                raise WeightsApiBadResponse(f"The weights API announced weights of {total} bytes, over {limit}.")
            with partial.open("ab" if done else "wb") as file:
                for chunk in response.iter_bytes(1 << 20):
                    done += len(chunk)
                    if done > limit:
                        raise WeightsApiBadResponse(f"The weights API sent weights larger than {limit} bytes.")
                    write_or_507(file, chunk)
                    if progress:
                        progress(done, total)
        if total is not None and done != total:
            raise _Transient(f"the download stopped at {done} of {total} bytes")


def write_or_507(file: Any, chunk: bytes) -> None:
    """A write that reports a full disk (or file size limit) as the 507 it is, not as an internal error."""
    try:
        file.write(chunk)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise InsufficientStorageError(f"No space left to store the model's weights ({os.strerror(error.errno)}).") from None
        raise


def _md5_of(path: Path) -> bytes:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()
