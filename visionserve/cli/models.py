"""`visionserve models`: the local model store ($VISIONSERVE_HOME/models)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.progress import DownloadColumn, Progress
from rich.table import Table

from visionserve.cli.client_options import ApiKeyOption, bearer
from visionserve.cli.common import OFF, Shown, console, env_option, env_prefix, fail
from visionserve.cli.running_servers import RunningServer, running_servers
from visionserve.config import Settings
from visionserve.errors import VisionServeError
from visionserve.models.aliases import resolve_alias
from visionserve.models.builtin import BuiltinModels
from visionserve.models.checkpoints import CheckpointExporter, release_export
from visionserve.models.inspect import ManifestOverrides, import_model
from visionserve.models.keypoint_schema import read_keypoint_schema
from visionserve.models.manifest import ModelFamily, Normalization, ResizeMode, Task
from visionserve.models.remote import RemoteModels
from visionserve.models.store import ModelStore
from visionserve.models.weights_api import WeightsApi

app = typer.Typer(
    help="Manage the local model store ($VISIONSERVE_HOME/models).", no_args_is_help=True,
    context_settings=env_prefix("models"),
)  # fmt: skip
FROM_MODEL = Shown("read from the model")
NONE = Shown("none")


def _parse_input_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    sides = [int(side) for side in text.replace("x", ",").split(",") if side.strip()]
    if len(sides) not in (1, 2) or min(sides) <= 0:
        raise typer.BadParameter("expected one size (640) or height,width (480,640)")
    return (sides[0], sides[-1])


def _parse_normalization(preset: str | None, mean: str | None, std: str | None) -> Normalization | None:
    """`--normalize imagenet|none`, or explicit `--mean` and `--std`."""
    if mean is not None or std is not None:
        if mean is None or std is None or preset is not None:
            raise ValueError("give --mean and --std together, instead of --normalize")
        return Normalization(mean=_three_floats(mean, "--mean"), std=_three_floats(std, "--std"))
    if preset is None or preset.lower() == "none":
        return None
    if preset.lower() == "imagenet":
        return Normalization.imagenet()
    raise ValueError(f"unknown --normalize {preset!r}; expected imagenet or none")


def _three_floats(text: str, flag: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(value) for value in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ValueError(f"{flag} takes three numbers R,G,B, e.g. 0.485,0.456,0.406")
    return values  # type: ignore[return-value]


@app.command("add")
def models_add(
    path: Annotated[
        Path,
        typer.Argument(exists=True, help="An ONNX file, a training checkpoint (Ultralytics best.pt, RF-DETR "
                       "checkpoint_best_total.pth), or a Roboflow package folder."),
    ],
    *,
    model_id: Annotated[str, typer.Option("--id", help="Id to serve it under, e.g. my-project/3.")],
    classes: Annotated[
        str | None, typer.Option(help="Class names, comma-separated, in index order.", default_factory=FROM_MODEL)
    ],
    imgsz: Annotated[str | None, typer.Option(help="Input size: 640 or height,width.", default_factory=FROM_MODEL)],
    task: Annotated[
        str | None, typer.Option(help="detect, segment, classify, pose, obb or semantic.", default_factory=FROM_MODEL)
    ],
    resize: Annotated[
        ResizeMode | None,
        typer.Option(help="How images are fitted to the input.", default_factory=Shown("the family's usual one")),
    ],
    multilabel: Annotated[
        bool, typer.Option("--multilabel", help="Classifier with independent scores per class.", default_factory=OFF)
    ],
    family: Annotated[
        str | None,
        typer.Option(help="Model family when the file cannot tell: yolo (yolov5, yolov8...), yolox, rfdetr, rtdetr, "
                     "yolo-nas.", default_factory=FROM_MODEL),
    ],
    normalize: Annotated[
        str | None,
        typer.Option(help="Input normalisation of a plain classifier or segmenter: imagenet (torchvision, timm) "
                     "or none.",
                     default_factory=Shown("the family's own (a plain classifier must choose)")),
    ],
    mean: Annotated[
        str | None, typer.Option(help="Per-channel R,G,B mean in 0..1 units (with --std).", default_factory=NONE)
    ],
    std: Annotated[
        str | None, typer.Option(help="Per-channel R,G,B std in 0..1 units (with --mean).", default_factory=NONE)
    ],
    crop_fraction: Annotated[
        float | None,
        typer.Option(help="Classifiers: centre crop / resized short side.",
                     default_factory=Shown("0.875 with --normalize imagenet, else 1")),
    ],
    keypoints: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False,
                     help="Keypoint names per class: a keypoints_metadata.json ([{object_class_id, keypoints}]).",
                     default_factory=FROM_MODEL),
    ],
    export_python: Annotated[
        str | None,
        env_option("--export-python", help="Python with the checkpoint's package (ultralytics or rfdetr) that "
                   "exports it to ONNX.", envvar="VISIONSERVE_EXPORT_PYTHON", default="this Python"),
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace a model with the same id.", default_factory=OFF)],
) -> None:
    """Add an ONNX export (Ultralytics YOLO and RT-DETR read from their metadata; RF-DETR, YOLOX and plain
    classifiers), a training checkpoint (exported to ONNX by its own package, once per checkpoint) or a Roboflow
    model package to the store."""
    try:
        normalization = _parse_normalization(normalize, mean, std)
        overrides = ManifestOverrides(
            task=Task.parse(task) if task else None,
            class_names=[name.strip() for name in classes.split(",") if name.strip()] if classes else None,
            input_size=_parse_input_size(imgsz),
            resize=resize,
            multilabel=multilabel,
            family=ModelFamily.parse(family) if family else None,
            normalization=normalization,
            no_normalization=normalize is not None and normalization is None,
            crop_fraction=crop_fraction,
            keypoint_names=read_keypoint_schema(keypoints) if keypoints else None,
        )
    except ValueError as error:
        raise fail(str(error)) from None
    except VisionServeError as error:
        raise fail(error.message) from None
    store = ModelStore(Settings().models_dir)
    try:
        exporter = CheckpointExporter(python=export_python or sys.executable, report=_progress_line)
        package = import_model(store, path, model_id, overrides, replace=force, exporter=exporter)
    except (VisionServeError, FileExistsError, FileNotFoundError) as error:
        message = error.message if isinstance(error, VisionServeError) else str(error)
        raise fail(message + (" (use --force to replace it)" if isinstance(error, FileExistsError) else "")) from None
    manifest = package.manifest
    console.print(
        f"added [bold]{manifest.model_id}[/bold]: {manifest.task.value}, {len(manifest.class_names)} classes, "
        f"input {'x'.join(map(str, manifest.input_size or ('dynamic',)))}, {manifest.resize.value}"
    )
    console.print(f"stored in {package.weights_path.parent}")


def _progress_line(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("pull")
def models_pull(
    model_id: Annotated[str, typer.Argument(help="project/version, or a public alias such as yolov8n-640.")],
    *,
    api_key: Annotated[
        str | None,
        env_option(help="Key for the weights API.", envvar=["VISIONSERVE_WEIGHTS_API_KEY", "ROBOFLOW_API_KEY"],
                   default="none"),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if the store has it.", default_factory=OFF)
    ],
) -> None:
    """Download a model from the weights API into the local store, so the server can run it offline."""
    settings = Settings()
    if not settings.weights_api:
        raise fail("no weights API is configured (VISIONSERVE_WEIGHTS_API is empty)")
    model_id = resolve_alias(model_id)
    store = ModelStore(settings.models_dir)
    try:
        if store.find(model_id) and not force:
            console.print(f"{model_id} is already in the store ({store.directory(model_id)}); --force downloads it again")
            return
        if force:
            store.remove(model_id)
        with Progress(*Progress.get_default_columns(), DownloadColumn(), console=console) as progress:
            remote = RemoteModels(
                WeightsApi(settings.weights_api, settings.weights_api_timeout_s),
                store,
                default_api_key=settings.weights_api_key,
                progress=lambda name: _progress_bar(progress, name),
            )
            package = remote.find(model_id, api_key)
    except VisionServeError as error:
        raise fail(error.message) from None
    manifest = package.manifest
    console.print(
        f"pulled [bold]{model_id}[/bold]: {manifest.task.value}, {len(manifest.class_names)} classes, "
        f"stored in {package.weights_path.parent}"
    )


def _progress_bar(progress: Progress, name: str) -> Callable[[int, int | None], None]:
    task = progress.add_task(f"downloading {name}", total=None)
    return lambda done, total: progress.update(task, completed=done, total=total)


@app.command("list")
def models_list() -> None:
    """List the models this server can serve."""
    builtin = BuiltinModels()
    rows = [(manifest, "store") for manifest in ModelStore(Settings().models_dir).list()]
    rows += [(package.manifest, "built in") for package in map(builtin.find, builtin.ids()) if package]
    table = Table()
    for column, widest in (("id", lambda m: m.model_id), ("task", lambda m: m.task.value)):  # never cut short
        table.add_column(column, no_wrap=True, min_width=max((len(widest(m)) for m, _ in rows), default=4))
    for column in ("classes", "input", "resize", "where"):
        table.add_column(column)
    for manifest, where in rows:
        size = "x".join(map(str, manifest.input_size)) if manifest.input_size else "dynamic"
        table.add_row(
            manifest.model_id, manifest.task.value, str(len(manifest.class_names)), size, manifest.resize.value, where
        )
    console.print(table)


@app.command("remove")
def models_remove(model_id: Annotated[str, typer.Argument(help="Id of a stored model.")], *, api_key: ApiKeyOption) -> None:
    """Delete a model from the local store (and the checkpoint export it was made from, when no other model was),
    and unload it from every running server of this $VISIONSERVE_HOME (however started); names each server it could
    not reach."""
    settings = Settings()
    store = ModelStore(settings.models_dir)
    try:
        manifest = store.manifest(model_id)
        removed = store.remove(model_id)
    except VisionServeError as error:
        raise fail(error.message) from None
    if not removed:
        raise fail(f"no model {model_id} in the store")
    console.print(f"removed {model_id}")
    export = release_export(store, manifest) if manifest else None
    if export:
        console.print(export, markup=False, highlight=False, soft_wrap=True)
    servers = running_servers(settings.home)
    if not servers:
        console.print(f"no server runs from {settings.home}; a server of another home or machine (Docker, Ray) keeps "
                      "serving it from memory until it restarts or gets POST /model/remove", highlight=False)  # fmt: skip
    for server in servers:
        console.print(_unload(server, model_id, api_key), markup=False, highlight=False)


def _unload(server: RunningServer, model_id: str, api_key: str | None) -> str:
    """POST /model/remove to `server`; what came of it, in one line."""
    try:
        response = httpx.post(f"{server.url}/model/remove", json={"model_id": model_id}, headers=bearer(api_key),
                              timeout=10)  # fmt: skip
    except httpx.HTTPError as error:
        return f"could not unload it from {server}: no answer ({error}); it keeps it until it restarts"
    if response.status_code != 200:
        key = " (give its key: --api-key or VISIONSERVE_API_KEY)" if response.status_code in (401, 403) else ""
        return f"could not unload it from {server}: {response.status_code} {response.text}{key}"
    if server.workers > 1:  # one worker answered; the others see the store's files gone at their next use
        return (f"no longer in memory at {server} in the worker that answered; its other {server.workers - 1} let "
                "it go at their next request for it")  # fmt: skip
    return f"no longer in memory at {server}"
