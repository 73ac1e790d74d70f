"""`visionserve infer`: predictions for an image, a URL or a folder of images, from a running server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.progress import track
from rich.table import Table

from visionserve.cli.client_options import ApiKeyOption, ApiUrlOption, server_url
from visionserve.cli.common import OFF, Shown, console, errors, fail
from visionserve.sdk import HTTPClientError, InferenceConfiguration, InferenceHTTPClient

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def _targets(target: str) -> list[str]:
    folder = Path(target)
    if folder.is_dir():
        images = sorted(str(path) for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise fail(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return images
    return [target]


def _title(name: str, result: dict[str, Any]) -> str:
    size = result.get("image", {})
    return f"{name} ({size.get('width')}x{size.get('height')}, {result.get('time', 0) * 1000:.0f} ms)"


def _report(name: str, result: dict[str, Any]) -> Table | str:
    """A table of the predictions, or one line when there are none."""
    if not result.get("predictions") and not result.get("top"):
        return f"{_title(name, result)}: no predictions"
    table = Table(title=_title(name, result))
    predictions = result.get("predictions")
    if "top" in result:
        table.add_column("class")
        table.add_column("confidence", justify="right")
        for prediction in predictions or []:
            table.add_row(prediction["class"], f"{prediction['confidence']:.3f}")
        return table
    if isinstance(predictions, dict):  # multi-label classification
        table.add_column("class")
        table.add_column("confidence", justify="right")
        for name_, value in predictions.items():
            table.add_row(name_, f"{value['confidence']:.3f}")
        return table
    for column in ("class", "confidence", "x", "y", "width", "height"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for prediction in predictions or []:
        table.add_row(
            prediction["class"],
            f"{prediction['confidence']:.3f}",
            *(f"{prediction[key]:.1f}" for key in ("x", "y", "width", "height")),
        )
    return table


def infer(
    target: Annotated[str, typer.Argument(help="An image file, an http(s) URL, or a folder of images.")],
    *,
    model: Annotated[str, typer.Option("--model", help="Model id, e.g. nudenet/1.")],
    confidence: Annotated[
        float | None, typer.Option(help="Minimum confidence.", default_factory=Shown("the server's, 0.4"))
    ],
    visualize: Annotated[
        Path | None, typer.Option(help="Write annotated images into this folder.", default_factory=Shown("none"))
    ],
    labels: Annotated[
        bool, typer.Option("--labels/--no-labels", help="Write class names and confidences on annotated images.")
    ] = True,
    json: Annotated[
        bool,
        typer.Option("--json", help="Print the server's JSON instead of tables (for a folder: one object, image → "
                     "answer).", default_factory=OFF),
    ],  # fmt: skip
    api_url: ApiUrlOption,
    api_key: ApiKeyOption,
) -> None:
    """Run a model on images through a running server and print the predictions. An image that fails is
    reported and skipped; the command exits 1 at the end if any did. Only predictions go to stdout: progress,
    failures and the summary go to stderr."""
    targets = _targets(target)
    client = InferenceHTTPClient(server_url(api_url), api_key)
    client.configure(
        InferenceConfiguration(
            confidence_threshold=confidence, visualize_predictions=visualize is not None, visualize_labels=labels
        )
    )
    if visualize is not None:
        visualize.mkdir(parents=True, exist_ok=True)
    answers: dict[str, Any] = {}
    steps = track(targets, description="inferring", console=errors) if len(targets) > 1 else targets
    for item in steps:
        try:
            result = client.infer(item, model_id=model)
        except (HTTPClientError, ValueError, OSError) as error:
            errors.print(f"[red]failed:[/red] {escape(item)}: {escape(str(error))}", highlight=False)
            continue
        assert isinstance(result, dict)
        name = Path(item).name or item
        if visualize is not None:
            (visualize / (Path(name).stem + ".jpg")).write_bytes(base64.b64decode(result.pop("visualization")))
        answers[item] = result
        if not json:
            console.print(_report(name, result))
    if json and (answers or Path(target).is_dir()):
        document = answers if Path(target).is_dir() else answers[target]
        console.out(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode(), highlight=False)
    if visualize is not None:
        errors.print(f"annotated images written to {escape(str(visualize))}", highlight=False)
    failures = len(targets) - len(answers)
    if len(targets) > 1:
        errors.print(f"{len(answers)} ok, {failures} failed")
    if failures:
        raise typer.Exit(code=1)
