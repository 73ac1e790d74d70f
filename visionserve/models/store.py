"""The local model store: one folder per model id under `$VISIONSERVE_HOME/models`.

Layout::

    models/<project>/<version>/weights.onnx     the ONNX weights, as given
    models/<project>/<version>/manifest.json    task, class names, input size, resize mode (ModelManifest)
    models/_/<name>/...                         a one-segment id (no segment of an id starts with '_')

A model is written into a staging folder and renamed into place, so readers never see half a model. Writers of a
model hold its lock (a file under `.staging/locks`, shared by every process) and name their staging after it, so
what a process that died left (kill -9 mid-download or mid-`models add`) is removed when that model is next
written or loaded, and at start-up once untouched for a while. The store keeps to a size quota.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from filelock import Timeout
from pydantic import ValidationError

from visionserve.errors import InsufficientStorageError, ModelPackageError
from visionserve.filelocks import held
from visionserve.models.ids import validate_model_id
from visionserve.models.manifest import MANIFEST_FILE, WEIGHTS_FILE, ModelManifest, ModelPackage

_STAGING = ".staging"
_LOCKS = "locks"
_SINGLE_SEGMENT = "_"
_OWNED_BY = "+"  # never in an id: staging `<model key>+<random>` belongs to that model
MAX_LOCK_NAME = 200  # file names stop at 255 bytes; longer ids are hashed
STALE_STAGING_S = 600.0  # staging untouched this long belongs to no live download (downloads write steadily)
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(path: Path) -> Iterator[Path]:
    return (item for item in path.rglob("*") if item.is_file()) if path.is_dir() else iter([path])


def _last_touched(path: Path) -> float:
    return max((item.stat().st_mtime for item in _files(path)), default=path.stat().st_mtime)


def _model_key(model_id: str) -> str:
    """A file name for the model's lock and staging."""
    name = validate_model_id(model_id).replace("/", "__")
    return hashlib.sha256(name.encode()).hexdigest() if len(name) > MAX_LOCK_NAME else name


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


class ModelStore:
    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes  # None: no quota

    def clean_stale_staging(self, older_than_s: float = STALE_STAGING_S) -> list[Path]:
        """Remove staging folders (and trash) no process has written to for `older_than_s`: what a killed
        download or `models add` left. Live ones, of other processes, are younger."""
        staging = self.root / _STAGING
        removed = []
        for entry in staging.iterdir() if staging.is_dir() else []:
            if entry.name == _LOCKS:
                continue
            try:
                stale = time.time() - _last_touched(entry) > older_than_s
            except FileNotFoundError:
                continue  # finished meanwhile
            if stale:
                _remove(entry)
                removed.append(entry)
        return removed

    def size_bytes(self) -> int:
        """Bytes the stored models take (staging excluded)."""
        models = (path for path in _files(self.root) if _STAGING not in path.relative_to(self.root).parts[:1])
        return sum(path.stat().st_size for path in models) if self.root.is_dir() else 0

    def _check_quota(self, adding: int) -> None:
        if self.max_bytes is not None and self.size_bytes() + adding > self.max_bytes:
            raise InsufficientStorageError(
                f"The model store would exceed its quota of {self.max_bytes} bytes (VISIONSERVE_MAX_STORE_BYTES); "
                "remove models (`visionserve models remove`) or raise the quota."
            )

    def directory(self, model_id: str) -> Path:
        parts = validate_model_id(model_id).split("/")
        return self.root.joinpath(*parts) if len(parts) == 2 else self.root / _SINGLE_SEGMENT / parts[0]

    def manifest(self, model_id: str) -> ModelManifest | None:
        """The stored model's manifest, or None when there is none or it cannot be read (it can still be removed)."""
        try:
            return ModelManifest.model_validate_json((self.directory(model_id) / MANIFEST_FILE).read_bytes())
        except (OSError, ValidationError):
            return None

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
        self.tidy(model_id)
        return ModelPackage(manifest=manifest, weights_path=weights)

    def ids(self) -> list[str]:
        return [manifest.model_id for manifest in self.list()]

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

    def staging_directory(self, model_id: str | None = None) -> Path:
        """A fresh folder on the store's file system, for files that will be moved in; named after the model
        whose lock its writer holds, when given."""
        name = uuid.uuid4().hex
        staging = self.root / _STAGING / (f"{_model_key(model_id)}{_OWNED_BY}{name}" if model_id else name)
        staging.mkdir(parents=True)
        return staging

    def lock_path(self, model_id: str) -> Path:
        """A lock file per model id, so several server processes download a model once."""
        path = self._lock_file(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _lock_file(self, model_id: str) -> Path:
        return self.root / _STAGING / _LOCKS / (_model_key(model_id) + ".lock")

    @contextmanager
    def locked(self, model_id: str, timeout_s: float = -1) -> Iterator[None]:
        """Hold the model's lock (filelock's Timeout after `timeout_s`; -1 waits)."""
        with held(self.lock_path(model_id), timeout_s):
            yield

    def leftovers(self, model_id: str) -> list[Path]:
        """The model's staging folders: a live writer's, or (to whoever holds the lock) what a dead one left."""
        staging = self.root / _STAGING
        return sorted(staging.glob(f"{_model_key(model_id)}{_OWNED_BY}*")) if staging.is_dir() else []

    def has_partial_download(self, model_id: str) -> bool:
        """Whether a download of the model began and never finished: the weights API had it."""
        return any(any(folder.glob("*.partial")) for folder in self.leftovers(model_id))

    def discard_leftovers(self, model_id: str) -> None:
        """Remove the model's staging; only for the holder of the model's lock, who is its only live writer."""
        for folder in self.leftovers(model_id):
            _remove(folder)

    def tidy(self, model_id: str) -> None:
        """Remove what a killed writer of the model left (staging, lock file), unless a live process holds
        the model's lock now: then the staging is that process's."""
        if not self.leftovers(model_id) and not self._lock_file(model_id).exists():
            return
        try:
            with self.locked(model_id, timeout_s=0):
                self.discard_leftovers(model_id)
        except Timeout:
            pass

    def add(
        self,
        weights: Path,
        manifest: ModelManifest,
        replace: bool = False,
        move: bool = False,
        extra_files: Mapping[str, bytes] | None = None,
    ) -> ModelPackage:
        """Put `weights` (copied, or moved when `move`) into the store under `manifest.model_id`, atomically,
        with `extra_files` (the original package's files, kept for reference) beside them. The caller holds
        `locked(manifest.model_id)`."""
        target = self.directory(manifest.model_id)
        if (target / MANIFEST_FILE).exists() and not replace:
            raise FileExistsError(f"model {manifest.model_id} is already in the store")
        self._check_quota(weights.stat().st_size + sum(len(content) for content in (extra_files or {}).values()))
        staging = self.staging_directory(manifest.model_id)
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
        except OSError as error:
            if error.errno in _NO_ROOM:
                raise InsufficientStorageError(f"No space left to store the model ({os.strerror(error.errno)}).") from None
            raise
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
