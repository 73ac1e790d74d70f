"""Outgoing notifications (the workflow webhook sink, stream pipelines' webhooks): the destination policy of image
URLs (http(s) only; public addresses only unless VISIONSERVE_URL_ALLOW_HOSTS names the host; the connection goes to
the checked address, so DNS rebinding cannot redirect it) and one send under one deadline, redirects not followed."""

from __future__ import annotations

from typing import Any

import httpx

from visionserve import __version__
from visionserve.http_deadline import deadline, deadline_transport
from visionserve.netpolicy import DestinationRefused, NotAnHttpUrl, PinnedUrl, UnresolvableHost, pinned_url

_client = httpx.Client(follow_redirects=False, trust_env=False, transport=deadline_transport(),
                       headers={"User-Agent": f"visionserve/{__version__}"})  # fmt: skip


class SinkRefused(Exception):
    """The URL is not one this server calls; the message says why."""


def checked_url(url: Any, allow_hosts: frozenset[str]) -> PinnedUrl:
    """The URL pinned to its checked address, as image URLs are (`netpolicy.pinned_url`)."""
    try:
        return pinned_url(url, allow_hosts, "VISIONSERVE_URL_ALLOW_HOSTS")
    except NotAnHttpUrl:
        raise SinkRefused(f"the URL {url!r} is not an http:// or https:// URL with a host.") from None
    except (DestinationRefused, UnresolvableHost) as error:
        raise SinkRefused(f"the URL points to a network destination that is not allowed: {error}") from None


def send(request: httpx.Request, timeout: float) -> tuple[bool, str]:
    """(failed, what happened): one exchange under one deadline, no redirects followed."""
    try:
        with deadline(timeout):
            response = _client.send(request)
    except httpx.TimeoutException:
        return True, f"the webhook did not answer within {timeout:g} s."
    except httpx.HTTPError as error:
        return True, f"the webhook could not be reached ({type(error).__name__})."
    if response.status_code >= 400:
        return True, f"the webhook answered HTTP {response.status_code}."
    return False, "Notification sent successfully"


def build_request(method: str, target: PinnedUrl, headers: dict[str, str] | None = None, **body: Any) -> httpx.Request:
    """A request to the checked address, naming the URL's own host (and TLS server name)."""
    return _client.build_request(method, target.url, headers={**(headers or {}), **target.headers},
                                 extensions=target.extensions, **body)  # fmt: skip
