"""Models that ship with the installation, so a fresh server can answer with no network and no key: a neutral
shapes detector the project trains itself, and a pretrained detector from a dependency's wheel."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path

from visionserve.models.inspect import ManifestOverrides, manifest_for
from visionserve.models.loader import open_session
from visionserve.models.manifest import ModelManifest, ModelPackage
from visionserve.runtime.onnx_model import RuntimeOptions

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def _package_file(package: str, name: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    return None


def _shapes_detector() -> Path:
    """tests/fixtures/models/shapes-detect.onnx (tools/make_fixtures.py: YOLOv8 detect, 160×160, circle, square
    and triangle), copied into the package: small, and nothing in it a demo has to explain away."""
    return ASSETS_DIR / "shapes-detect.onnx"


def _nudenet_detector() -> Path | None:
    """The Ultralytics YOLOv8n export (320×320, 18 classes) inside the `nudenet` wheel."""
    return _package_file("nudenet", "320n.onnx")


BUILTIN_WEIGHTS: dict[str, Callable[[], Path | None]] = {
    "shapes/1": _shapes_detector,
    "nudenet/1": _nudenet_detector,
}
NEUTRAL_MODEL_ID = "shapes/1"  # what the playground offers first


class BuiltinModels:
    """A model source whose manifests come from the files' own Ultralytics metadata (read once)."""

    def __init__(self) -> None:
        self._manifests: dict[str, ModelManifest] = {}
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        return [model_id for model_id, locate in BUILTIN_WEIGHTS.items() if locate() is not None]

    def find(self, model_id: str, api_key: str | None = None) -> ModelPackage | None:
        locate = BUILTIN_WEIGHTS.get(model_id)
        weights = locate() if locate else None
        if weights is None:
            return None
        with self._lock:
            if model_id not in self._manifests:
                runner = open_session(weights, RuntimeOptions())
                self._manifests[model_id] = manifest_for(
                    runner, model_id, ManifestOverrides(), source=f"built in ({weights})"
                )
        return ModelPackage(manifest=self._manifests[model_id], weights_path=weights, builtin=True)
