"""The front page: a playground to try models in a browser, plain HTML, JS and CSS shipped in the package (no
CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

PLAYGROUND_DIR = Path(__file__).resolve().parent.parent.parent / "playground"
PLAYGROUND_URL = "/playground"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def front_page() -> FileResponse:
    return FileResponse(PLAYGROUND_DIR / "index.html", media_type="text/html")


def mount_playground(app: FastAPI) -> None:
    app.mount(PLAYGROUND_URL, StaticFiles(directory=PLAYGROUND_DIR), name="playground")


def public_paths() -> frozenset[str]:
    """What a browser loads before it can ask for an API key: the page and its assets (exact paths, as access
    control matches them)."""
    return frozenset({"/"}) | asset_paths(PLAYGROUND_DIR, PLAYGROUND_URL)


def asset_paths(directory: Path, url: str) -> frozenset[str]:
    """The URL of every file in `directory`, served under `url`."""
    return frozenset(f"{url}/{path.name}" for path in directory.iterdir() if path.is_file())
