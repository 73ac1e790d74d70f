"""Client for a Roboflow-compatible weights API, and the downloads it points to.

Protocol (the reference's): `GET {base}/ort/{project}/{version}?api_key=...` answers `{"ort": {"type", "modelType",
"model": <weights URL>, "environment": <environment.json URL>, "classes", "colors"}}`; one-segment ids use
`GET {base}/getWeights?model=...` with `modelFiles.ort.model` and an inline `environment`.

Downloads go to a `.partial` file, resume with a Range request after a transient failure, are checked against the
announced size and MD5 (`x-goog-hash`), and only then renamed into place.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from visionserve import __version__
from visionserve.errors import ModelNotFoundError, VisionServeError

logger = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes if known)
NO_KEY_VALUES = frozenset({"", "local", "none", "null"})


class WeightsApiKeyRejected(VisionServeError):
    status_code = 401

    def __init__(self) -> None:
        super().__init__(
            "Unauthorized access to the weights API - check the API key and make sure it is valid for the "
            "workspace of this model."
        )


class WeightsApiForbidden(VisionServeError):
    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "Unauthorized access to the weights API - the API key is valid but lacks access to this model "
            "or the scopes it needs."
        )


class WeightsApiUnavailable(VisionServeError):
    status_code = 503
    headers = {"Retry-After": "5"}


class WeightsApiTimeout(VisionServeError):
    status_code = 504


class WeightsApiBadResponse(VisionServeError):
    status_code = 502


def usable_key(api_key: str | None) -> str | None:
    """None for no key; the reference treats an empty key and the literal `local` as no key."""
    if api_key is None or api_key.strip().lower() in NO_KEY_VALUES:
        return None
    return api_key.strip()


@dataclass(frozen=True)
class RemoteModel:
    task_type: str
    model_type: str | None
    weights_url: str
    environment: dict[str, Any]
    class_names: list[str] | None = None
    colors: dict[str, str] = field(default_factory=dict)


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


class WeightsApi:
    def __init__(self, base_url: str, timeout_s: float = 30.0, attempts: int = 3, backoff_s: float = 0.5) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            headers={"User-Agent": f"visionserve/{__version__}", "X-Roboflow-Inference-Version": __version__},
        )

    def close(self) -> None:
        self._client.close()

    # --- model description ---

    def describe(self, model_id: str, api_key: str | None) -> RemoteModel:
        key = usable_key(api_key)
        auth = {"api_key": key} if key else {}
        if "/" in model_id:
            project, version = model_id.split("/")
            params = {**auth, "nocache": "true", "device": socket.gethostname(), "dynamic": "true"}
            payload = self._get_json(f"{self.base_url}/ort/{project}/{version}", params, model_id)
            return self._from_ort(payload, model_id)
        payload = self._get_json(f"{self.base_url}/getWeights", {**auth, "model": model_id}, model_id)
        return self._from_get_weights(payload)

    def _from_ort(self, payload: Mapping[str, Any], model_id: str) -> RemoteModel:
        ort = payload.get("ort")
        if not isinstance(ort, Mapping) or not ort.get("model") or not ort.get("environment"):
            raise WeightsApiBadResponse("The weights API answered without the model's files (ort.model, ort.environment).")
        environment = self._get_json(str(ort["environment"]), {}, model_id)
        return RemoteModel(
            task_type=str(ort.get("type") or "object-detection"),
            model_type=ort.get("modelType"),
            weights_url=str(ort["model"]),
            environment=dict(environment),
            class_names=[str(name) for name in ort["classes"]] if isinstance(ort.get("classes"), list) else None,
            colors=dict(ort["colors"]) if isinstance(ort.get("colors"), Mapping) else {},
        )

    def _from_get_weights(self, payload: Mapping[str, Any]) -> RemoteModel:
        files = payload.get("modelFiles")
        weights = files.get("ort", {}).get("model") if isinstance(files, Mapping) else None
        environment = payload.get("environment")
        if not weights or not isinstance(environment, Mapping):
            raise WeightsApiBadResponse("The weights API answered without the model's files (modelFiles.ort.model).")
        classes = payload.get("classes")
        return RemoteModel(
            task_type=str(payload.get("taskType") or "object-detection"),
            model_type=payload.get("modelType"),
            weights_url=str(weights),
            environment=dict(environment),
            class_names=[str(name) for name in classes] if isinstance(classes, list) else None,
            colors=dict(payload["colors"]) if isinstance(payload.get("colors"), Mapping) else {},
        )

    def _get_json(self, url: str, params: Mapping[str, str], model_id: str) -> Mapping[str, Any]:
        def attempt() -> Mapping[str, Any]:
            response = self._client.get(url, params=params)
            self._raise_for_status(response, model_id)
            try:
                payload = response.json()
            except ValueError:
                raise WeightsApiBadResponse("The weights API answered with something that is not JSON.") from None
            if not isinstance(payload, Mapping):
                raise WeightsApiBadResponse("The weights API answered with JSON that is not an object.")
            return payload

        return self._with_retries(attempt)

    def _raise_for_status(self, response: httpx.Response, model_id: str) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 401:
            raise WeightsApiKeyRejected()
        if status == 403:
            raise WeightsApiForbidden()
        if status == 404:
            raise ModelNotFoundError(model_id)
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        raise WeightsApiBadResponse(f"The weights API refused the request with HTTP {status}.")

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        """Retry transient failures with exponential backoff; the last one becomes a 503 or 504."""
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except httpx.TimeoutException:
                failure: Exception = WeightsApiTimeout(
                    f"Timeout when attempting to reach the weights API at {self.base_url} ({self.timeout_s:g} s)."
                )
            except (httpx.TransportError, _Transient) as error:
                failure = WeightsApiUnavailable(
                    f"Could not reach the weights API at {self.base_url} ({error or type(error).__name__}); "
                    "retry later."
                )
            if attempt < self.attempts:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise failure

    # --- downloads ---

    def download(self, url: str, destination: Path, progress: Progress | None = None) -> None:
        """Fetch `url` into `destination` atomically, resuming after transient failures."""
        partial = destination.with_name(destination.name + ".partial")
        expected_md5: list[bytes | None] = [None]
        try:
            self._with_retries(lambda: self._download_once(url, partial, expected_md5, progress))
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
            self._raise_for_status(response, url)
            if response.status_code == 200:
                done = 0  # the server ignored the Range header: the body is the whole file
                expected_md5[0] = _md5_from_headers(response.headers)
            length = response.headers.get("content-length", "")
            total = done + int(length) if length.isdigit() else None
            with partial.open("ab" if done else "wb") as file:
                for chunk in response.iter_bytes(1 << 20):
                    file.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        if total is not None and done != total:
            raise _Transient(f"the download stopped at {done} of {total} bytes")


def _md5_of(path: Path) -> bytes:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()
