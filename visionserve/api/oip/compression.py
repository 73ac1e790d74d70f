"""Compressed request bodies: Triton's clients can send them gzip- or deflate-encoded (`Content-Encoding`).
They are inflated up to a limit (the body's, or the JSON's when no binary data follows), so a small compressed
body cannot become a huge one."""

from __future__ import annotations

import zlib

from visionserve.errors import InvalidRequestError, PayloadTooLargeError, VisionServeError

WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class UnsupportedEncodingError(VisionServeError):
    status_code = 415


def inflated(body: bytes, encoding: str | None, max_bytes: int, limit_name: str) -> bytes:
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        return body
    if name not in WINDOW_BITS:
        raise UnsupportedEncodingError(
            f"Content-Encoding {name!r} is not supported; use gzip, deflate or none."
        )
    inflater = zlib.decompressobj(WINDOW_BITS[name])
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as error:
        raise InvalidRequestError(f"The {name} body cannot be inflated: {error}.") from None
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"Request body is larger than the limit of {max_bytes} bytes once inflated ({limit_name})."
        )
    if not inflater.eof:
        raise InvalidRequestError(f"The {name} body is cut short.")
    return data
