"""Options of the commands that talk to a running server."""

from __future__ import annotations

from typing import Annotated

from visionserve.cli.common import env_option
from visionserve.cli.running_servers import running_servers
from visionserve.config import Settings

ApiUrlOption = Annotated[
    str | None,
    env_option(
        help="Server URL.", envvar="VISIONSERVE_API_URL",
        default="the newest running server's, else http://127.0.0.1:9001",
    ),
]  # fmt: skip
ApiKeyOption = Annotated[
    str | None,
    env_option(help="API key sent with requests.", envvar="VISIONSERVE_API_KEY", default="none"),
]  # fmt: skip


def server_url(api_url: str | None) -> str:
    """The URL given, else the most recently started running server's, else the default address."""
    if api_url:
        return api_url.rstrip("/")
    settings = Settings()
    servers = running_servers(settings.home)
    return servers[-1].url if servers else f"http://127.0.0.1:{settings.port}"


def bearer(api_key: str | None) -> dict[str, str]:
    """The header that presents `api_key`, if any."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
