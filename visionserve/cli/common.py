"""What every command shares: consoles, failing with a message, and where a running server is."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


def env_option(*names: str, help: str, envvar: str, default: str) -> Any:
    """An option that also reads `envvar`, with its help showing the variable and the default the settings apply
    (the option itself defaults to None, so the settings decide)."""
    return typer.Option(*names, help=help, envvar=envvar, show_envvar=True, show_default=default)


def fail(message: str) -> typer.Exit:
    """Print an error in red and return the exit to raise (`raise fail(...)`)."""
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)
