"""Options of the commands that talk to a running server."""

from __future__ import annotations

from typing import Annotated

import typer

from visionserve.cli.common import env_option
from visionserve.config import Settings

ApiUrlOption = Annotated[
    str | None,
    env_option(
        help="Server URL.", envvar="VISIONSERVE_API_URL", default="the background server's, else http://127.0.0.1:9001"
    ),
]
ApiKeyOption = Annotated[str | None, typer.Option(help="API key sent with requests.")]


def server_url(api_url: str | None) -> str:
    """The URL given, else the one `server start` recorded, else the default address."""
    from visionserve.cli.server import ServerRecord

    if api_url:
        return api_url.rstrip("/")
    settings = Settings()
    record = ServerRecord.load(settings.home)
    return record.url if record else f"http://127.0.0.1:{settings.port}"
