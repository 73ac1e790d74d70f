"""Training checkpoints (Ultralytics `best.pt`, RF-DETR `checkpoint_best_total.pth`) turned into ONNX at add time.

The export runs in a child process (export_worker.py) under a Python that has the family's package, so the
server never imports torch. Exports are cached in the store under `.exports/<checkpoint sha256>`: adding the
same checkpoint again, under any id, reuses its ONNX.

Which family wrote a checkpoint is read from its pickle without running it (pickletools lists the opcodes):
Ultralytics pickles its model classes (`ultralytics.nn.tasks...`), rfdetr's trainer stores `model_name`
(RFDETRNano...) and `rfdetr_version` beside the weights. Anything else is refused, naming the flag that chooses.
"""

from __future__ import annotations

import json
import pickletools
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionserve.errors import CheckpointExportError
from visionserve.filelocks import held, lock_beside
from visionserve.models.manifest import ModelFamily, ModelManifest, Task
from visionserve.models.store import ModelStore, sha256_of

if TYPE_CHECKING:
    from visionserve.models.inspect import ManifestOverrides

WORKER = Path(__file__).with_name("export_worker.py")
ONNX_FILE, INFO_FILE = "model.onnx", "checkpoint.json"  # as export_worker.py writes them
EXPORTS = ".exports"  # never a model id: id segments never start with '.'
ZIP_MAGIC, PICKLE_PROTOCOL = b"PK\x03\x04", 0x80
PACKAGES = {ModelFamily.YOLO: "ultralytics", ModelFamily.RTDETR: "ultralytics", ModelFamily.RFDETR: "rfdetr"}
FLAG = "--family ultralytics or --family rfdetr"


@dataclass(frozen=True)
class CheckpointExporter:
    """How to export: the Python that runs the worker (it needs the family's package) and where progress goes."""

    python: str = sys.executable
    report: Callable[[str], None] = field(default=lambda line: None)


@dataclass(frozen=True)
class Exported:
    onnx: Path
    info: dict[str, Any]  # what the worker read from the checkpoint


def is_checkpoint(path: Path) -> bool:
    """A torch.save file (a zip archive, or a bare pickle from old torch), never an ONNX protobuf."""
    with path.open("rb") as file:
        head = file.read(4)
    return head == ZIP_MAGIC or (len(head) > 1 and head[0] == PICKLE_PROTOCOL)


def pickle_strings(path: Path) -> set[str]:
    """Every string and global name in the checkpoint's pickle, read opcode by opcode (nothing is executed)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    except (zipfile.BadZipFile, StopIteration, OSError):
        data = path.read_bytes()[: 64 << 20]
    strings: set[str] = set()
    try:
        for _opcode, argument, _position in pickletools.genops(data):
            if isinstance(argument, str):
                strings.add(argument.replace(" ", "."))  # GLOBAL gives "module name"
    except (ValueError, EOFError, UnicodeDecodeError):
        pass  # a truncated or odd stream: what was read so far still tells
    return strings


def checkpoint_family(path: Path, chosen: ModelFamily | None) -> ModelFamily:
    if chosen is not None:
        if chosen not in PACKAGES:
            raise CheckpointExportError(f"{chosen.value} checkpoints cannot be exported here; export the ONNX with the "
                                    "family's own tools and add that file")  # fmt: skip
        return chosen
    strings = pickle_strings(path)
    if any(text.startswith("ultralytics.") for text in strings):
        return ModelFamily.YOLO
    if "rfdetr_version" in strings or any(text.startswith(("RFDETR", "rf-detr")) for text in strings):
        return ModelFamily.RFDETR  # the trainer's keys, its model class name, or its starter weights' name
    raise CheckpointExportError(f"cannot tell which package wrote the checkpoint {path.name}; pass {FLAG}")


def export_checkpoint(
    store: ModelStore,
    path: Path,
    family: ModelFamily | None,
    size: tuple[int, int] | None,  # (height, width); None: the size the checkpoint records
    exporter: CheckpointExporter,
) -> Exported:
    """The checkpoint's ONNX and what it records, exported now or found in the store's export cache. Concurrent
    adds of one checkpoint (processes or threads) export it once: the others wait on the entry's lock, then use it."""
    family = checkpoint_family(path, family)
    if family is ModelFamily.RFDETR and size is not None and size[0] != size[1]:
        raise CheckpointExportError("RF-DETR is exported at one square resolution; pass --imgsz N")
    imgsz = None if size is None else str(size[0]) if size[0] == size[1] else f"{size[0]},{size[1]}"
    cached = store.root / EXPORTS / f"{sha256_of(path)}-{(imgsz or 'own').replace(',', 'x')}-{family.value}"
    if is_complete(cached) or not export_once(cached, path, family, imgsz, store, exporter):
        exporter.report(f"using the ONNX exported earlier from this checkpoint ({cached})")
    return Exported(cached / ONNX_FILE, json.loads((cached / INFO_FILE).read_text()))


def export_once(
    cached: Path, path: Path, family: ModelFamily, imgsz: str | None, store: ModelStore, exporter: CheckpointExporter
) -> bool:
    """Export into `cached` under its lock, unless another add finished it while this one waited (then False)."""
    waiting = partial(exporter.report, f"waiting for another export of {path.name} to finish ({cached})")
    with held(lock_beside(cached), waiting=waiting):
        if is_complete(cached):
            return False
        export_into(cached, path, family, imgsz, store.staging_directory(), exporter)
        return True


def is_complete(cached: Path) -> bool:
    """An export is only ever renamed into place whole, so both files there mean a finished one."""
    return (cached / INFO_FILE).is_file() and (cached / ONNX_FILE).is_file()


def export_into(
    cached: Path, path: Path, family: ModelFamily, imgsz: str | None, staging: Path, exporter: CheckpointExporter
) -> None:
    """Export in `staging` (the store's, removed at start-up if this process dies) and rename it to `cached` at the
    end, so a crash mid-export leaves nothing a later add could take for a finished export."""
    package = PACKAGES[family]
    try:
        worker = shutil.copy(WORKER, staging / WORKER.name)  # alone in its folder: visionserve's modules never shadow
        command = [exporter.python, worker, package, str(path.resolve()), str(staging)]
        exporter.report(f"exporting {path.name} to ONNX with {package} (in {exporter.python}); this takes a while")
        started = time.monotonic()
        info = run_worker(command + (["--imgsz", imgsz] if imgsz else []), staging, package, exporter.python)
        exporter.report(f"exported in {time.monotonic() - started:.0f} s ({info.get('package', package)})")
        Path(worker).unlink()
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(cached, ignore_errors=True)  # an unfinished entry (never renamed in whole): not an export
        staging.rename(cached)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_worker(command: list[str], out: Path, package: str, python: str) -> dict[str, Any]:
    try:
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise CheckpointExportError(f"cannot run the export Python {python}: {error.strerror}; pass --export-python "
                                "(or VISIONSERVE_EXPORT_PYTHON) with one that has the package") from None  # fmt: skip
    try:
        info = json.loads((out / INFO_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        last = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckpointExportError(f"the {package} export failed (exit {finished.returncode}): {last}") from None
    if "missing" in info:
        raise CheckpointExportError(
            f"exporting this checkpoint needs the {package} package, and {python} lacks {info['missing']}: "
            f"pip install 'visionserve[{package}]', or pass --export-python with a Python that has it"
        )
    if "error" in info:
        raise CheckpointExportError(f"the {package} export failed: {info['error']}")
    return info


def recorded_task(info: dict[str, Any]) -> Task | None:
    """The task the checkpoint records, when this server has it (the ONNX path names any other)."""
    try:
        return Task.parse(info["task"]) if info.get("task") else None
    except ValueError:
        return None


def exported_model(
    store: ModelStore, path: Path, overrides: ManifestOverrides, exporter: CheckpointExporter
) -> tuple[Path, ManifestOverrides]:
    """The checkpoint's ONNX, and the overrides with what the checkpoint records filled in (flags still win)."""
    exported = export_checkpoint(store, path, overrides.family, overrides.input_size, exporter)
    info = exported.info
    return exported.onnx, replace(
        overrides,
        family=overrides.family or ModelFamily.parse(info["family"]),
        task=overrides.task or recorded_task(info),
        class_names=overrides.class_names or info.get("class_names") or None,
        keypoint_counts=overrides.keypoint_counts or info.get("keypoint_counts"),
    )


def release_export(store: ModelStore, removed: ModelManifest) -> str | None:
    """After `removed`'s model left the store: delete the checkpoint export it was copied from, unless another
    stored model was made from it too. What became of the export, in a line (None: it came from none)."""
    name = removed.export
    if not name or Path(name).name != name or name.startswith("."):
        return None  # no export, or not an entry name this store writes
    cached = store.root / EXPORTS / name
    with held(lock_beside(cached)):  # not while an add exports or reads it
        others = [manifest.model_id for manifest in store.list() if manifest.export == name]
        if others:
            return f"kept its checkpoint export {cached}: {', '.join(others)} was made from it too"
        if not cached.is_dir():
            return None
        shutil.rmtree(cached)
    return f"removed its checkpoint export {cached}"
