"""`/docs` and `/redoc` with no network: Swagger UI and ReDoc as the `fastapi-offline` package ships them, so an
air-gapped server still shows its documentation (FastAPI's own pages load both from a CDN), each page under a
Content-Security-Policy that allows exactly what it runs."""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from visionserve.api.routes.playground import asset_paths
from visionserve.api.security_headers import inline_script_hashes, page_headers

ASSETS_URL = "/static-offline-docs"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
SWAGGER_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"
REDOC_SCRIPT = "redoc.standalone.js"
PAGE_PATHS = frozenset({SWAGGER_URL, OAUTH2_REDIRECT_URL, REDOC_URL, "/openapi.json"})
# The "API docs by Redocly" badge's logo, which ReDoc's bundle loads from a CDN: an empty image instead, which the
# badge hides (its text stays).
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:,"
# ReDoc injects its styles (styled-components) and runs its search in a worker made from a blob.
_REDOC_POLICY = page_headers(styles="'self' 'unsafe-inline'", workers="'self' blob:")

pages = APIRouter(include_in_schema=False)


def documented_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose documentation pages load their scripts and styles from this server."""
    app = FastAPI(docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=OAUTH2_REDIRECT_URL, **kwargs)
    app.include_router(pages)  # before the assets' mount: the patched ReDoc bundle is served in its place
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="static-offline-docs")
    return app


def docs_paths() -> frozenset[str]:
    """The documentation pages and every asset they load (exact paths, as access control matches them)."""
    return PAGE_PATHS | asset_paths(ASSETS_DIR, ASSETS_URL)


def _with_own_scripts(page: HTMLResponse) -> HTMLResponse:
    """The page, allowed to run its own inline start-up script and nothing else inline."""
    page.headers.update(page_headers(scripts=inline_script_hashes(bytes(page.body).decode())))
    return page


@pages.get(SWAGGER_URL)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    app = request.app
    return _with_own_scripts(
        get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
    )


@pages.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return _with_own_scripts(get_swagger_ui_oauth2_redirect_html())


@pages.get(REDOC_URL)
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/{REDOC_SCRIPT}",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )
    page.headers.update(_REDOC_POLICY)
    return page


@functools.cache
def _redoc_bundle() -> bytes:
    return (ASSETS_DIR / REDOC_SCRIPT).read_bytes().replace(_REDOC_LOGO, _EMPTY_IMAGE)


@pages.get(f"{ASSETS_URL}/{REDOC_SCRIPT}")
async def redoc_script() -> Response:
    """ReDoc's bundle, less its one request off this server."""
    return Response(_redoc_bundle(), media_type="text/javascript")
