"""Which network destinations the server may fetch from on a caller's behalf (image URLs, weights downloads):
public addresses only, unless the operator allows a host by name.

IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, IPv4-compatible, Teredo) are judged by that address,
so `64:ff9b::a9fe:a9fe` is the cloud metadata address it embeds, not a public IPv6 one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass

import httpx

from visionserve.http_deadline import resolve

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


class DestinationRefused(Exception):
    """The host resolves to an address the policy refuses; the message says which and how to allow it."""


class UnresolvableHost(Exception):
    pass


class NotAnHttpUrl(Exception):
    """Not an http:// or https:// URL with a host."""


@dataclass(frozen=True)
class PinnedUrl:
    """A URL rewritten to its checked IP address, with the original Host header and TLS server name."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, str]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _NAT64_LOCAL or (int(address) >> 32 == 0 and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)  # NAT64, or IPv4-compatible ::a.b.c.d
    return None


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return False
        if address.teredo is not None:
            return all(is_public(part) for part in address.teredo)
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast


def checked_address(host: str, port: int, allow_hosts: Collection[str], allow_setting: str) -> IPAddress:
    """The host's first address, after every address it resolves to passed the policy (unless allowed by name)."""
    try:
        infos = resolve(host, port)
    except (socket.gaierror, UnicodeError):
        raise UnresolvableHost(f"the host {host} cannot be resolved.") from None
    except TimeoutError:
        raise UnresolvableHost(f"the host {host} did not resolve in time.") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if host.lower() not in allow_hosts:
        for address in addresses:
            if not is_public(address):
                raise DestinationRefused(
                    f"{host} resolves to {address}, a loopback, private, link-local or otherwise non-public "
                    f"address. Add the host to {allow_setting} to allow it."
                )
    return addresses[0]


def pinned_url(url: object, allow_hosts: Collection[str], allow_setting: str) -> PinnedUrl:
    """An http(s) URL with its host resolved and checked once, the connection sent to that checked address, so a
    DNS answer that changes between the check and the connection (DNS rebinding) cannot redirect it."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else None
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise NotAnHttpUrl(f"{url!r} is not an http:// or https:// URL with a host")
    host = parsed.host.lower()
    address = checked_address(host, parsed.port or (443 if parsed.scheme == "https" else 80), allow_hosts,
                              allow_setting)  # fmt: skip
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return PinnedUrl(parsed.copy_with(host=str(address)), {"Host": parsed.netloc.decode("ascii")}, extensions)
