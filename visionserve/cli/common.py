"""What every command shares: consoles, failing with a message, and options that show their default and their
environment variable in `--help`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from visionserve.config import Settings

console = Console()
errors = Console(stderr=True)


def env_prefix(*command: str) -> dict[str, str]:
    """Context settings giving every option of `command` without a variable of its own click's automatic one,
    VISIONSERVE_<COMMAND>_<OPTION> (e.g. VISIONSERVE_INFER_CONFIDENCE), shown in `--help`."""
    return {"auto_envvar_prefix": "_".join(("VISIONSERVE", *command)).upper().replace("-", "_")}


@dataclass(frozen=True)
class Shown:
    """An option's default that something else decides (the settings, the server, the file): the option passes
    `value`, and `--help` shows `[default: text]` (a plain string default would print as `(text)`)."""

    text: str
    value: Any = None

    def __call__(self) -> Any:
        return self.value

    def __str__(self) -> str:
        return self.text


OFF = Shown("off", False)  # the default of an on/off flag, which `--help` would otherwise leave out


def env_option(*names: str, help: str, envvar: str | list[str], default: str, **checks: Any) -> Any:
    """An option that reads `envvar`; it passes None unless given, so whoever reads the variable too (the
    settings) applies the default shown."""
    return typer.Option(*names, help=help, envvar=envvar, show_envvar=True, default_factory=Shown(default), **checks)


def setting_option(setting: str, *names: str, help: str, **checks: Any) -> Any:
    """An option for the server setting `setting`: it reads VISIONSERVE_<SETTING> and shows the setting's own
    default (it passes None unless given, so the settings apply that default)."""
    field = Settings.model_fields[setting]
    default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    shown = ",".join(default) if isinstance(default, list) else str(default)
    return env_option(*names, help=help, envvar=f"VISIONSERVE_{setting.upper()}", default=shown or "none", **checks)


def fail(message: str) -> typer.Exit:
    """Print an error in red and return the exit to raise (`raise fail(...)`); the message is never markup."""
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)  # one line to grep
    return typer.Exit(code=1)
