"""Which stream references may be opened, decided before anything is opened: network URLs pass the same address
policy as image URLs, local paths and devices must lie under an operator-configured root.

Also what a reference *is* (network URL, file, folder, glob, camera device), so the policy and the sources agree,
and the ffmpeg protocol whitelist each kind is opened with.
"""

from __future__ import annotations

import glob
import re
import urllib.parse
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from visionserve.netpolicy import DestinationRefused, UnresolvableHost, checked_address

NETWORK_SCHEMES = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}
FILE_ROOTS_SETTING = "VISIONSERVE_STREAM_FILE_ROOTS"
URL_ALLOW_SETTING = "VISIONSERVE_URL_ALLOW_HOSTS"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_CAMERA = re.compile(r"^/dev/video\d+$")
_SECRET_KEYS = ("pass", "pwd", "token", "secret", "key", "auth", "signature")
_FILE_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".ts", ".flv", ".m3u8")

# ffmpeg's `protocol_whitelist` lists the I/O protocols a container may open, the first URL and every URL it leads
# to (HLS playlists and segments, RTSP's RTP/UDP side channels, AES-128 keys through crypto). It stops an HLS
# playlist, or a crafted local file, from pulling `file:`, `pipe:`, `concat:`, `subfile:`, `data:` or `fd:` data.
# It does NOT stop a whitelisted protocol from reaching another host: an HLS playlist or an HTTP redirect can still
# point at any host, private addresses included, and ffmpeg resolves host names again when it connects (so DNS
# rebinding between the check here and the connection is not stopped either). Only the first URL's host is checked.
_WHITELISTS = {
    "rtsp": "rtsp,rtp,srtp,udp,tcp",
    "rtsps": "rtsp,rtsps,rtp,srtp,udp,tcp,tls",
    "rtmp": "rtmp,tcp",
    "http": "http,https,tcp,tls,crypto",
    "https": "http,https,tcp,tls,crypto",
    "file": "file,crypto",
}


class SourceRefused(Exception):
    """The reference may not be opened; `status_code` is the HTTP status to answer with (400 or 403)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@dataclass(frozen=True)
class ParsedReference:
    kind: Literal["network", "file", "folder", "glob", "camera"]
    target: str  # the URL, the path, the glob pattern or the device path
    scheme: str  # the URL scheme; "file" for local paths and "v4l2" for cameras

    @property
    def is_file_like(self) -> bool:
        """Read every frame in order (files, folders, HLS and video files over HTTP) rather than the newest."""
        if self.kind == "network":
            path = urllib.parse.urlsplit(self.target).path.lower()
            return self.scheme in ("http", "https") and path.endswith(_FILE_VIDEO_SUFFIXES)
        return self.kind != "camera"

    @property
    def protocol_whitelist(self) -> str:
        return _WHITELISTS.get(self.scheme, "file")


def parse_reference(reference: str | int) -> ParsedReference:
    """What kind of reference this is; raises SourceRefused (400) for a scheme that is not a stream protocol."""
    if isinstance(reference, int) or (isinstance(reference, str) and reference.isdigit()):
        return ParsedReference("camera", f"/dev/video{int(reference)}", "v4l2")
    if not isinstance(reference, str) or not reference:
        raise SourceRefused("a stream reference must be a URL, a path or a camera number", 400)
    match = _SCHEME.match(reference)
    if match and not reference.startswith("/"):
        scheme = match.group(1).lower()
        if scheme not in NETWORK_SCHEMES:
            allowed = ", ".join(NETWORK_SCHEMES)
            raise SourceRefused(f"the scheme {scheme}: is not allowed for streams (allowed: {allowed})", 400)
        return ParsedReference("network", reference, scheme)
    if _CAMERA.match(reference):
        return ParsedReference("camera", reference, "v4l2")
    if glob.has_magic(reference):
        return ParsedReference("glob", reference, "file")
    return ParsedReference("folder" if Path(reference).is_dir() else "file", reference, "file")


def check_reference(reference: object, *, url_allow_hosts: Collection[str], file_roots: Sequence[Path]) -> None:
    """Raise SourceRefused unless the reference may be opened. Pushed frames (iterables, callables) are in-process
    only, so they need no check."""
    if not isinstance(reference, (str, int)) or isinstance(reference, bool):
        return
    parsed = parse_reference(reference)
    if parsed.kind == "network":
        _check_url(parsed, url_allow_hosts)
    else:
        _check_local(parsed, file_roots)


def _check_url(parsed: ParsedReference, allow_hosts: Collection[str]) -> None:
    try:
        split = urllib.parse.urlsplit(parsed.target)
        host, port = split.hostname, split.port
    except ValueError as error:
        raise SourceRefused(f"the stream URL is malformed: {error}", 400) from None
    if not host:
        raise SourceRefused("the stream URL has no host", 400)
    try:
        checked_address(host, port or NETWORK_SCHEMES[parsed.scheme], allow_hosts, URL_ALLOW_SETTING)
    except DestinationRefused as error:
        raise SourceRefused(str(error), 403) from None
    except UnresolvableHost as error:
        raise SourceRefused(str(error), 400) from None


def _check_local(parsed: ParsedReference, file_roots: Sequence[Path]) -> None:
    if not file_roots:
        raise SourceRefused(f"local stream sources are disabled: set {FILE_ROOTS_SETTING} to the folders (or "
                            f"devices) that streams may read from", 403)  # fmt: skip
    roots = [Path(root).resolve() for root in file_roots]
    if parsed.kind == "glob":
        base = _glob_base(parsed.target)
        check_under_roots(base, roots, parsed.target)
        matches = sorted(glob.glob(parsed.target))
        if not matches:
            raise SourceRefused(f"no file matches {parsed.target}", 400)
        for match in matches:
            check_under_roots(Path(match), roots, match)
        return
    path = Path(parsed.target)
    check_under_roots(path, roots, parsed.target)
    if not path.exists():
        raise SourceRefused(f"{parsed.target} does not exist", 400)


def check_under_roots(path: Path, roots: Sequence[Path], shown: str) -> None:
    """Raise SourceRefused (403) unless the path, symlinks followed, lies in one of the (resolved) roots."""
    resolved = path.resolve()  # symlinks followed: a link inside a root that leads outside is refused
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise SourceRefused(f"{shown} is outside the folders streams may read from ({FILE_ROOTS_SETTING})", 403)


def _glob_base(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading parts without wildcards."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def printable_reference(reference: str) -> str:
    """The reference with URL credentials (user info, secret-looking query values) masked as ***."""
    try:
        split = urllib.parse.urlsplit(reference)
    except ValueError:  # a malformed URL: show its scheme only
        return reference.split(":", 1)[0] + "://***"
    if not split.scheme or not split.netloc:
        return reference
    netloc = split.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
    masked = [(k, "***" if any(word in k.lower() for word in _SECRET_KEYS) else v) for k, v in query]
    return urllib.parse.urlunsplit(split._replace(netloc=netloc, query=urllib.parse.urlencode(masked, safe="*")))
