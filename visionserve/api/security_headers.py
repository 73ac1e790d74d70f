"""Headers that limit what a browser does with this server's answers: no type sniffing on any answer, and for the
HTML pages (the playground, Swagger UI, ReDoc) a Content-Security-Policy that runs only this server's scripts, sends
requests only to it and lets no other site frame the page."""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NOSNIFF = (b"x-content-type-options", b"nosniff")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


class NoSniff:
    """`X-Content-Type-Options: nosniff` on every answer: a JSON error echoing a caller's text is never run as a
    script or shown as HTML."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), _NOSNIFF]}
            await send(message)

        await self.app(scope, receive, send_nosniff)


def inline_script_hashes(html: str) -> list[str]:
    """CSP sources for each attribute-less `<script>` of a page: a page's own start-up code, allowed by hash so that
    no other inline script runs."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    ]


def page_headers(
    scripts: list[str] | None = None, styles: str = "'self'", images: str = "'self' data:", workers: str = "'self'"
) -> dict[str, str]:
    """The headers of an HTML page; each argument widens one directive beyond this server for a page that needs it
    (ReDoc's generated styles and search worker, the playground's preview of an image URL)."""
    policy = {
        "default-src": "'self'",
        "script-src": " ".join(["'self'", *(scripts or [])]),
        "style-src": styles,
        "img-src": images,
        "worker-src": workers,
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return {
        "Content-Security-Policy": "; ".join(f"{name} {value}" for name, value in policy.items()),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
