"""The front page: a playground to try models in a browser, plain HTML, JS and CSS shipped in the package (no
CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from visionserve.api.security_headers import page_headers
from visionserve.models.builtin import ASSETS_DIR

PLAYGROUND_DIR = Path(__file__).resolve().parent.parent.parent / "playground"
PLAYGROUND_URL = "/playground"
FAVICON = ASSETS_DIR / "favicon.ico"
FAVICON_URL = "/favicon.ico"
# The preview of an image given by URL is the one thing the page loads from elsewhere (the image itself).
_PAGE_HEADERS = page_headers(images="'self' data: blob: http: https:")

router = APIRouter()


@router.get("/", include_in_schema=False)
async def front_page() -> FileResponse:
    return FileResponse(PLAYGROUND_DIR / "index.html", media_type="text/html", headers=_PAGE_HEADERS)


@router.get(FAVICON_URL, include_in_schema=False)
async def favicon() -> FileResponse:
    """What browsers ask every server for; a 404 there fills logs and consoles."""
    return FileResponse(FAVICON, media_type="image/x-icon")


def mount_playground(app: FastAPI) -> None:
    app.mount(PLAYGROUND_URL, StaticFiles(directory=PLAYGROUND_DIR), name="playground")


def public_paths() -> frozenset[str]:
    """What a browser loads before it can ask for an API key: the page, its icon and its assets (exact paths, as
    access control matches them)."""
    return frozenset({"/", FAVICON_URL}) | asset_paths(PLAYGROUND_DIR, PLAYGROUND_URL)


def asset_paths(directory: Path, url: str) -> frozenset[str]:
    """The URL of every file in `directory`, served under `url`."""
    return frozenset(f"{url}/{path.name}" for path in directory.iterdir() if path.is_file())
