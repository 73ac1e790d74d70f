"""Access control: with `VISIONSERVE_API_KEYS` set, every route but health (and, if so configured, docs and
metrics) needs one of the keys, from `Authorization: Bearer`, the `api_key` query parameter, or a JSON body's
`api_key`. 401 without a key, 403 with a wrong one.

Keys are kept only as SHA-256 digests and compared in constant time. A JSON body is never parsed here: the header
and query are checked first, and a body is only searched, chunk by chunk as it arrives, for an `"api_key": "..."`
member (a megabytes-long body of tiny objects would otherwise cost gigabytes and seconds before a 401).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from urllib.parse import parse_qs

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visionserve.errors import PayloadTooLargeError


class AccessKeys:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys if key]

    @classmethod
    def parse(cls, value: str) -> AccessKeys:
        """Comma-separated keys, or the path of a file with one key a line (blank and # lines skipped)."""
        path = Path(value.strip())
        if value.strip() and path.is_file():
            lines = [line.strip() for line in path.read_text().splitlines()]
            return cls([line for line in lines if line and not line.startswith("#")])
        return cls([part.strip() for part in value.split(",")])

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        digest = hashlib.sha256(key.encode()).digest()
        matched = False
        for known in self._digests:  # no early exit: the time taken does not tell which key came close
            matched |= hmac.compare_digest(digest, known)
        return matched


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


_BODY_KEY = re.compile(rb'"api_key"\s*:\s*"([^"\\]{1,1024})"')
_BODY_KEY_SPAN = 1100  # the longest match: a member split across chunks is found in the previous tail + chunk


def _presented_key(scope: Scope) -> str | None:
    """The key from `Authorization: Bearer` or the `api_key` query parameter."""
    scheme, _, token = _header(scope, b"authorization").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key")
    if query and query[0]:
        return query[0]
    return None


class AccessControl:
    def __init__(self, app: ASGIApp, keys: AccessKeys, open_paths: frozenset[str]) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        key = _presented_key(scope)
        if key is None and "application/json" in _header(scope, b"content-type").lower():
            try:
                body, key = await _read_body_finding_key(receive)
            except PayloadTooLargeError as error:
                await JSONResponse({"message": error.message}, status_code=error.status_code)(scope, receive, send)
                return
            receive = _replay(body, receive)
        if key is None:
            message = "This server needs an API key: send it as `Authorization: Bearer <key>`, `api_key` in the query, or `api_key` in the JSON body."
            await JSONResponse({"message": message}, status_code=401)(scope, receive, send)
        elif not self.keys.accepts(key):
            await JSONResponse({"message": "The API key is not valid for this server."}, status_code=403)(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _read_body_finding_key(receive: Receive) -> tuple[bytes, str | None]:
    """The body, and the first `"api_key": "..."` in it, searched as each chunk arrives (never parsed)."""
    chunks: list[bytes] = []
    key: bytes | None = None
    tail = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        if key is None:
            match = _BODY_KEY.search(tail + chunk)
            key = match.group(1) if match else None
            tail = (tail + chunk)[-_BODY_KEY_SPAN:]
        if not message.get("more_body", False):
            break
    return b"".join(chunks), key.decode("utf-8", "replace") if key else None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body to the app, then passes through (e.g. disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
