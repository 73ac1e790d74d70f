"""The `visionserve` command: run and manage the server, its models, and predictions from the shell."""

from __future__ import annotations

import typer

from visionserve.cli import benchmark, models, ray_serve, server, workflows
from visionserve.cli.common import env_prefix
from visionserve.cli.infer import infer
from visionserve.cli.serve import serve
from visionserve.cli.stream import stream

app = typer.Typer(help="Self-hosted inference server for computer-vision models.", no_args_is_help=True)
app.command(context_settings=env_prefix("serve"))(serve)
app.command(context_settings=env_prefix("infer"))(infer)
app.command(context_settings=env_prefix("stream"))(stream)
app.add_typer(server.app, name="server")
app.add_typer(models.app, name="models")
app.add_typer(benchmark.app, name="benchmark")
app.add_typer(ray_serve.app, name="ray")
app.add_typer(workflows.app, name="workflows")
