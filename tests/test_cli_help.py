"""`--help` of every command: each option's help printed whole, with its default and its environment variable
(a new option without them fails here), and no help text eaten as markup."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.test_cli_server import visionserve
from visionserve.cli import app

TYPER_OWN = {"help", "install_completion", "show_completion"}  # options Typer adds to every app


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group under `command` (Typer's own click classes: duck-typed)."""
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _option_rows(help_text: str) -> dict[str, str]:
    """The Options panel as {first option name: its row}, wrapped lines joined."""
    rows: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        cells = line.strip().strip("│").strip()
        match = re.match(r"^\*?\s*(--[\w-]+)", cells)
        if match:
            current = match.group(1)
            rows[current] = cells
        elif current and line.startswith("│") and cells:
            rows[current] += " " + cells
        elif not line.startswith("│"):
            current = None
    return {name: " ".join(row.split()) for name, row in rows.items()}


def _name(path: tuple[str, ...]) -> str:
    return " ".join(path) or "visionserve"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[_name(path) for path, _ in COMMANDS])
def test_every_option_shows_its_whole_help_default_and_environment_variable(
    path: tuple[str, ...], command: Any
) -> None:
    shown = visionserve(*path, "--help", env={"COLUMNS": "400"}).stdout
    rows = _option_rows(shown)
    for parameter in command.params:
        if parameter.param_type_name != "option" or parameter.name in TYPER_OWN:
            continue
        row = rows[parameter.opts[0]]
        assert parameter.help and " ".join(parameter.help.split()) in row, (path, parameter.name, row)  # no markup eaten
        assert re.search(r"\[env var: [A-Z_]+(, [A-Z_]+)*\]", row), (path, parameter.name, row)
        assert "[required]" in row or re.search(r"\[default: [^(\]][^\]]*\]", row), (path, parameter.name, row)


def test_defaults_are_shown_as_values_not_in_brackets() -> None:
    text = " ".join(visionserve("serve", "--help", env={"COLUMNS": "400"}).stdout.replace("│", " ").split())
    for shown in ("[env var: VISIONSERVE_HOST] [default: 127.0.0.1]", "[env var: VISIONSERVE_PORT] [default: 9001]",
                  "[env var: VISIONSERVE_WORKERS] [default: 1]", "[env var: VISIONSERVE_LOG_LEVEL] [default: info]",
                  "[env var: VISIONSERVE_PRELOAD_MODELS] [default: none]"):  # fmt: skip
        assert shown in text
    text = " ".join(visionserve("infer", "--help", env={"COLUMNS": "400"}).stdout.replace("│", " ").split())
    assert "[env var: VISIONSERVE_API_KEY] [default: none]" in text
    assert "[env var: VISIONSERVE_INFER_CONFIDENCE] [default: the server's, 0.4]" in text


def test_the_ray_help_names_the_extra_to_install() -> None:
    shown = " ".join(visionserve("ray", "--help", env={"COLUMNS": "200"}).stdout.split())
    assert "pip install 'visionserve[ray]'" in shown


def test_an_option_reads_the_environment_variable_its_help_names(tmp_path) -> None:
    """Options without a setting of their own read VISIONSERVE_<COMMAND>_<OPTION>, as their help says."""
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    result = CliRunner().invoke(app, ["models", "add", str(junk)],
                                env={"VISIONSERVE_HOME": str(tmp_path), "VISIONSERVE_MODELS_ADD_MODEL_ID": "p/1"})  # fmt: skip
    assert result.exit_code == 1 and "as an ONNX model" in result.output  # it got past the missing --id
