"""Where a request's API key comes from, in the reference's order of precedence.

The key is only ever forwarded to the weights API, to fetch a model the server does not have yet.
"""

from __future__ import annotations

from fastapi import Request


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def json_route_key(request: Request, body_key: str | None) -> str | None:
    """`/infer/*` and `/model/add`: the Authorization header wins over the body's `api_key`."""
    return bearer_token(request) or body_key


def legacy_route_key(request: Request, query_key: str | None) -> str | None:
    """`/{project}/{version}`: the `api_key` query parameter wins over the Authorization header."""
    return query_key or bearer_token(request)
