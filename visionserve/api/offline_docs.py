"""`/docs` and `/redoc` with no network: Swagger UI and ReDoc as the `fastapi-offline` package ships them, so an
air-gapped server still shows its documentation (FastAPI's own pages load both from a CDN)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from visionserve.api.routes.playground import asset_paths

ASSETS_URL = "/static-offline-docs"
PAGE_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def documented_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose documentation pages load their scripts and styles from this server."""
    return FastAPIOffline(static_url=ASSETS_URL, **kwargs)


def docs_paths() -> frozenset[str]:
    """The documentation pages and every asset they load (exact paths, as access control matches them)."""
    return PAGE_PATHS | asset_paths(Path(str(files("fastapi_offline") / "static")), ASSETS_URL)
