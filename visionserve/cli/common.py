"""What every command shares: consoles, failing with a message, and where a running server is."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print an error in red and return the exit to raise (`raise fail(...)`)."""
    errors.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)
