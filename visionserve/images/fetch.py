"""Downloading image URLs safely: http(s) only, public destinations only (no SSRF into loopback, private
networks or cloud metadata), one wall-clock deadline over connect, headers and body of every hop, a size cap, and
every redirect hop checked again.

The host is resolved and checked once, and the connection goes to that checked address, so a DNS answer that
changes between the check and the connection (DNS rebinding) cannot redirect the download.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urljoin

import httpx

from visionserve import __version__
from visionserve.errors import InputImageError
from visionserve.http_deadline import deadline, deadline_transport
from visionserve.netpolicy import DestinationRefused, NotAnHttpUrl, PinnedUrl, UnresolvableHost, pinned_url

MAX_REDIRECTS = 5


def _not_loaded(cause: str) -> InputImageError:
    return InputImageError(f"Data pointed by URL could not be loaded: {cause}")


class UrlFetcher:
    def __init__(
        self, timeout_s: float, max_bytes: int, allow_hosts: Iterable[str] = (), enabled: bool = True
    ) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.allow_hosts = frozenset(host.strip().lower() for host in allow_hosts if host.strip())
        self.enabled = enabled
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"User-Agent": f"visionserve/{__version__}"},
            trust_env=False,
            transport=deadline_transport(),
        )

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str) -> bytes:
        if not self.enabled:
            raise InputImageError("Providing images via URL is disabled on this server (VISIONSERVE_ALLOW_URL_INPUT).")
        with deadline(self.timeout_s):
            return self._fetch(url)

    def _fetch(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            target = self._checked(url)
            try:
                with self._client.stream("GET", target.url, headers=target.headers, extensions=target.extensions) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise _not_loaded(f"the server answered HTTP {response.status_code}.")
                    return self._read_capped(response)
            except httpx.TimeoutException:
                raise _not_loaded(f"no answer within {self.timeout_s:g} s.") from None
            except httpx.HTTPError as error:
                raise _not_loaded(f"{type(error).__name__}.") from None
        raise _not_loaded(f"more than {MAX_REDIRECTS} redirects.")

    def _checked(self, url: str) -> PinnedUrl:
        try:
            return pinned_url(url, self.allow_hosts, "VISIONSERVE_URL_ALLOW_HOSTS")
        except NotAnHttpUrl:
            raise InputImageError("Provided image URL is invalid: only http:// and https:// URLs with a host are accepted.") from None
        except UnresolvableHost as error:
            raise _not_loaded(str(error)) from None
        except DestinationRefused as error:
            raise InputImageError(f"URL points to a network destination that is not allowed: {error}") from None

    def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> InputImageError:
        return _not_loaded(f"the image is larger than {self.max_bytes} bytes (VISIONSERVE_URL_MAX_BYTES).")
