"""The local model store: one folder per model id under `$VISIONSERVE_HOME/models`.

Layout::

    models/<project>/<version>/weights.onnx     the ONNX weights, as given
    models/<project>/<version>/manifest.json    task, class names, input size, resize mode (ModelManifest)
    models/_/<name>/...                         a one-segment id (no segment of an id starts with '_')

A model is written into a staging folder and renamed into place, so readers never see half a model.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from visionserve.errors import ModelPackageError
from visionserve.models.ids import validate_model_id
from visionserve.models.manifest import MANIFEST_FILE, WEIGHTS_FILE, ModelManifest, ModelPackage

_STAGING = ".staging"
_SINGLE_SEGMENT = "_"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def directory(self, model_id: str) -> Path:
        parts = validate_model_id(model_id).split("/")
        return self.root.joinpath(*parts) if len(parts) == 2 else self.root / _SINGLE_SEGMENT / parts[0]

    def find(self, model_id: str, api_key: str | None = None) -> ModelPackage | None:
        """The stored model, or None if there is none. A manifest that cannot be read is an error."""
        directory = self.directory(model_id)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            return None
        try:
            manifest = ModelManifest.model_validate_json(manifest_path.read_bytes())
        except ValidationError as error:
            raise ModelPackageError(f"{manifest_path} is not a valid manifest: {error}") from None
        weights = directory / manifest.weights_file
        if not weights.is_file():
            raise ModelPackageError(f"{weights} is missing")
        return ModelPackage(manifest=manifest, weights_path=weights)

    def list(self) -> list[ModelManifest]:
        manifests = []
        for path in sorted(self.root.rglob(MANIFEST_FILE)) if self.root.is_dir() else []:
            if path.relative_to(self.root).parts[0] == _STAGING:
                continue
            try:
                manifests.append(ModelManifest.model_validate_json(path.read_bytes()))
            except ValidationError:
                continue
        return manifests

    def staging_directory(self) -> Path:
        """A fresh folder on the store's file system, for downloads that will be moved in."""
        staging = self.root / _STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        return staging

    def lock_path(self, model_id: str) -> Path:
        """A lock file per model id, so several server processes download a model once."""
        locks = self.root / _STAGING / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return locks / (validate_model_id(model_id).replace("/", "__") + ".lock")

    def add(
        self,
        weights: Path,
        manifest: ModelManifest,
        replace: bool = False,
        move: bool = False,
        extra_files: Mapping[str, bytes] | None = None,
    ) -> ModelPackage:
        """Put `weights` (copied, or moved when `move`) into the store under `manifest.model_id`, atomically,
        with `extra_files` (the original package's files, kept for reference) beside them."""
        target = self.directory(manifest.model_id)
        if (target / MANIFEST_FILE).exists() and not replace:
            raise FileExistsError(f"model {manifest.model_id} is already in the store")
        staging = self.staging_directory()
        try:
            (shutil.move if move else shutil.copyfile)(weights, staging / WEIGHTS_FILE)
            for name, content in (extra_files or {}).items():
                (staging / name).write_bytes(content)
            stored = manifest.model_copy(
                update={
                    "weights_file": WEIGHTS_FILE,
                    "weights_sha256": sha256_of(staging / WEIGHTS_FILE),
                    "added_at": datetime.now(timezone.utc),
                }
            )
            (staging / MANIFEST_FILE).write_text(stored.model_dump_json(indent=2) + "\n")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                self._discard(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ModelPackage(manifest=stored, weights_path=target / WEIGHTS_FILE)

    def remove(self, model_id: str) -> bool:
        target = self.directory(model_id)
        if not (target / MANIFEST_FILE).exists():
            return False
        self._discard(target)
        try:
            target.parent.rmdir()  # the project folder, once its last version is gone
        except OSError:
            pass
        return True

    def _discard(self, directory: Path) -> None:
        """Move a model folder aside, then delete it, so it vanishes in one step."""
        trash = self.root / _STAGING / f"trash-{uuid.uuid4().hex}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        directory.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
