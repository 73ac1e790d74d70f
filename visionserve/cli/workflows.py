"""`visionserve workflows`: workflow definitions saved on this server ($VISIONSERVE_HOME/workflows), which the
saved-workflow routes (`POST /{workspace}/workflows/{workflow_id}`) run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from visionserve.cli.common import OFF, console, env_prefix, fail
from visionserve.config import Settings
from visionserve.errors import VisionServeError
from visionserve.workflows.saved import SavedWorkflows, parse_definition

app = typer.Typer(
    help="Workflow definitions saved on this server ($VISIONSERVE_HOME/workflows).", no_args_is_help=True,
    context_settings=env_prefix("workflows"),
)  # fmt: skip

WorkflowId = Annotated[str, typer.Argument(help="The saved workflow's id.")]


def _saved() -> SavedWorkflows:
    return SavedWorkflows(Settings().home)


@app.command("add")
def workflows_add(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A workflow definition (JSON).")],
    *,
    workflow_id: Annotated[str, typer.Option("--id", help="Id the saved-workflow routes run it under.")],
    force: Annotated[bool, typer.Option(help="Replace a workflow saved under the same id.", default_factory=OFF)],
) -> None:
    """Check a definition and save it, for `POST /{workspace}/workflows/{id}` (any workspace name)."""
    try:
        saved = _saved().add(workflow_id, parse_definition(path.read_bytes()), replace=force)
    except VisionServeError as error:
        raise fail(error.message) from None
    console.print(f"saved workflow {saved.workflow_id}: {saved.summary}", highlight=False)


@app.command("list")
def workflows_list() -> None:
    """The saved workflows."""
    saved = _saved()
    ids = saved.ids()
    if not ids:
        console.print(f"no workflow is saved in {saved.folder}", highlight=False)
        return
    table = Table("id", "steps")
    for workflow_id in ids:
        table.add_row(workflow_id, saved.get(workflow_id).summary)
    console.print(table)


@app.command("show")
def workflows_show(workflow_id: WorkflowId) -> None:
    """Print a saved definition as JSON."""
    try:
        definition = _saved().get(workflow_id).definition
    except VisionServeError as error:
        raise fail(error.message) from None
    typer.echo(json.dumps(definition, indent=2))


@app.command("remove")
def workflows_remove(workflow_id: WorkflowId) -> None:
    """Delete a saved definition."""
    try:
        removed = _saved().remove(workflow_id)
    except VisionServeError as error:
        raise fail(error.message) from None
    if not removed:
        raise fail(f"no workflow {workflow_id!r} is saved")
    console.print(f"removed workflow {workflow_id}", highlight=False)
