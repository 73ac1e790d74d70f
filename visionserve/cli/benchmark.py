"""`visionserve benchmark api-speed`: a bounded load against a running server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from visionserve.cli.client_options import ApiKeyOption, ApiUrlOption, server_url
from visionserve.cli.common import Shown, console, env_prefix, fail
from visionserve.loadtest import http_load
from visionserve.sdk import HTTPClientError, InferenceHTTPClient
from visionserve.sdk.client import TASK_ROUTES

app = typer.Typer(help="Measure a running server.", no_args_is_help=True, context_settings=env_prefix("benchmark"))
DEFAULT_IMAGE = Path(__file__).parent.parent / "assets" / "astronaut.jpg"


@app.command("api-speed")
def api_speed(
    *,
    model: Annotated[str, typer.Option("--model", help="Model id, e.g. nudenet/1.")],
    concurrency: Annotated[int, typer.Option(min=1, help="Clients sending at the same time.")] = 4,
    requests: Annotated[int, typer.Option(min=1, help="Requests in all.")] = 200,
    image: Annotated[
        Path,
        typer.Option(exists=True, dir_okay=False, help="Photo to send.",
                     default_factory=Shown("the bundled astronaut.jpg", DEFAULT_IMAGE)),
    ],  # fmt: skip
    batch: Annotated[int, typer.Option(min=1, help="Images per request.")] = 1,
    api_url: ApiUrlOption,
    api_key: ApiKeyOption,
) -> None:
    """Send REQUESTS requests from CONCURRENCY clients; print throughput, latency percentiles and errors."""
    url = server_url(api_url)
    try:
        description = InferenceHTTPClient(url, api_key).get_model_description(model)
    except HTTPClientError as error:
        raise fail(str(error)) from None
    route = TASK_ROUTES.get(description["task_type"])
    if route is None:
        raise fail(f"models of task {description['task_type']} cannot be benchmarked")
    encoded = {"type": "base64", "value": base64.b64encode(image.read_bytes()).decode("ascii")}
    body = orjson.dumps({"model_id": model, "api_key": api_key, "image": [encoded] * batch if batch > 1 else encoded})
    console.print(f"{requests} requests, {concurrency} at a time, to {url}{route} ({model}, {image.name} x{batch})")
    timing = http_load(url, route, body, concurrency, requests=requests)
    table = Table("requests/s", "images/s", "p50 ms", "p95 ms", "p99 ms", "errors", title="api speed")
    table.add_row(
        f"{timing.per_second:.1f}",
        f"{timing.per_second * batch:.1f}",
        *(f"{timing.percentile_ms(q):.1f}" for q in (50, 95, 99)),
        str(timing.errors),
    )
    console.print(table)
    if timing.errors:
        raise typer.Exit(code=1)
