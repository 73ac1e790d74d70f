"""Downloading image URLs with a deadline, a size cap, and every redirect hop checked again."""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit

import httpx

from visionserve import __version__
from visionserve.errors import InputImageError

MAX_REDIRECTS = 5


def check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputImageError("Provided image URL is invalid: only http:// and https:// URLs with a host are accepted.")


class UrlFetcher:
    def __init__(self, timeout_s: float, max_bytes: int) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"User-Agent": f"visionserve/{__version__}"},
            trust_env=False,
        )

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url)
            try:
                with self._client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise InputImageError(
                            f"Data pointed by URL could not be loaded: the server answered HTTP {response.status_code}."
                        )
                    return self._read_capped(response, deadline)
            except httpx.HTTPError as error:
                raise InputImageError(
                    f"Data pointed by URL could not be loaded: {type(error).__name__}."
                ) from None
        raise InputImageError(f"Data pointed by URL could not be loaded: more than {MAX_REDIRECTS} redirects.")

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large()
            if time.monotonic() > deadline:
                raise InputImageError(f"Data pointed by URL could not be loaded within {self.timeout_s:g} s.")
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> InputImageError:
        return InputImageError(
            f"Image at URL is larger than {self.max_bytes} bytes (VISIONSERVE_URL_MAX_BYTES)."
        )
