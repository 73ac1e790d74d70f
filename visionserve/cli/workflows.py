"""`visionserve workflows`: run a definition against a running server, and keep definitions saved on this server
($VISIONSERVE_HOME/workflows), which the saved-workflow routes (`POST /{workspace}/workflows/{workflow_id}`) run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from visionserve.cli.client_options import ApiKeyOption, ApiUrlOption, server_url
from visionserve.cli.common import OFF, Shown, console, env_prefix, errors, fail
from visionserve.cli.workflow_outputs import summary, write_images
from visionserve.config import Settings
from visionserve.errors import VisionServeError
from visionserve.sdk import HTTPClientError, InferenceHTTPClient
from visionserve.workflows.saved import SavedWorkflows, parse_definition

app = typer.Typer(
    help="Run workflows, and keep definitions saved on this server ($VISIONSERVE_HOME/workflows).",
    no_args_is_help=True,
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
    force: Annotated[
        bool, typer.Option("--force", help="Replace a workflow saved under the same id.", default_factory=OFF)
    ],
) -> None:
    """Compile a definition (as the server would, running nothing) and save it, for
    `POST /{workspace}/workflows/{id}` (any workspace name)."""
    from visionserve.workflows.compiler import compile_definition  # loaded only here (slow)
    from visionserve.workflows.limits import WorkflowLimits

    try:
        definition = parse_definition(path.read_bytes())
        compile_definition(definition, WorkflowLimits.of(Settings()))
        saved = _saved().add(workflow_id, definition, replace=force)
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


def parse_param(text: str) -> tuple[str, Any]:
    """`NAME=VALUE`, the value read as JSON when it is JSON (0.5, true, ["a"]), else kept as text."""
    name, equals, raw = text.partition("=")
    if not equals or not name:
        raise ValueError(f"--param takes NAME=VALUE, not {text!r}")
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def _image_inputs(definition: dict[str, Any] | None) -> list[str]:
    """The definition's image inputs; without a definition at hand (saved on another server), `image`."""
    if definition is None:
        return ["image"]
    return [str(item.get("name")) for item in definition.get("inputs") or []
            if isinstance(item, dict) and item.get("type") in ("WorkflowImage", "InferenceImage")]  # fmt: skip


def _assign_images(values: list[str], definition: dict[str, Any] | None) -> dict[str, Any]:
    """`--image` values → `images=` of `run_workflow`: NAME=PATH, or a bare PATH for the only image input; an input
    given several times is a batch."""
    images: dict[str, list[str]] = {}
    for value in values:
        name, equals, path = value.partition("=")
        if not equals or Path(value).is_file() or value.startswith(("http://", "https://")):  # a URL's query has '='
            inputs = _image_inputs(definition)
            if len(inputs) != 1:
                raise ValueError(f"the workflow has image inputs {', '.join(inputs) or 'none'}: give --image NAME=PATH")
            name, path = inputs[0], value
        images.setdefault(name, []).append(path)
    return {name: paths[0] if len(paths) == 1 else paths for name, paths in images.items()}


def _definition(path: Path | None, workflow_id: str | None) -> dict[str, Any] | None:
    if (path is None) == (workflow_id is None):
        raise ValueError("give a definition FILE or --id NAME" + (", not both" if path else ""))
    if path is not None:
        return parse_definition(path.read_bytes())
    saved = _saved()
    return saved.get(workflow_id).definition if workflow_id in saved.ids() else None


@app.command("run")
def workflows_run(
    path: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="A workflow definition (JSON), or --id.")
    ] = None,
    *,
    workflow_id: Annotated[
        str | None,
        typer.Option("--id", help="Run the workflow saved on the server under this id (`workflows add`) instead of a "
                     "FILE, through POST /{workspace}/workflows/{id}.", default_factory=Shown("none")),
    ],  # fmt: skip
    workspace: Annotated[
        str, typer.Option(help="Workspace part of the saved-workflow route (any name here).")
    ] = "local",
    image: Annotated[
        list[str] | None,
        typer.Option("--image", help="An image (file, URL): PATH for the workflow's only image input, or NAME=PATH; "
                     "repeat an input for a batch.", default_factory=Shown("none")),
    ],  # fmt: skip
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="A workflow parameter, NAME=VALUE; VALUE is read as JSON when it can be "
                     "(0.5, true, [\"a\"]), else as text.", default_factory=Shown("none")),
    ],  # fmt: skip
    output: Annotated[
        Path | None,
        typer.Option(help="Write the output images into this folder (JPEG).", default_factory=Shown("none")),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the outputs as JSON (what run_workflow returns) instead of a "
                           "summary.", envvar="VISIONSERVE_WORKFLOWS_RUN_JSON", show_envvar=True, default_factory=OFF),
    ],  # fmt: skip
    api_url: ApiUrlOption,
    api_key: ApiKeyOption,
) -> None:
    """Run a workflow on images through a running server and print its outputs, one summary line each. With
    --json only the outputs go to stdout, everything else to stderr."""
    try:
        definition = _definition(path, workflow_id)
        images = _assign_images(image or [], definition)
        parameters = dict(parse_param(item) for item in param or [])
        with InferenceHTTPClient(server_url(api_url), api_key) as client:
            if path is not None:
                outputs = client.run_workflow(specification=definition, images=images, parameters=parameters)
            else:
                outputs = client.run_workflow(workspace_name=workspace, workflow_id=workflow_id, images=images,
                                              parameters=parameters)  # fmt: skip
    except (HTTPClientError, VisionServeError, ValueError, OSError) as error:
        raise fail(getattr(error, "message", None) or str(error)) from None
    if as_json:
        console.out(orjson.dumps(outputs, option=orjson.OPT_INDENT_2).decode(), highlight=False)
    else:
        for index, element in enumerate(outputs):
            if len(outputs) > 1:
                console.print(f"element {index}", highlight=False)
            for name, value in element.items():
                console.print(f"{'  ' if len(outputs) > 1 else ''}{escape(name)}: {escape(summary(value))}",
                              highlight=False, soft_wrap=True)  # fmt: skip
    if output is not None:
        errors.print(f"{write_images(outputs, output)} images written to {escape(str(output))}", highlight=False)
