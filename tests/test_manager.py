import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from visionserve.errors import ModelNotFoundError, ModelPackageError
from visionserve.models.manager import ModelManager
from visionserve.models.manifest import ModelManifest, ModelPackage, Task
from visionserve.models.resolver import ModelResolver


class FakeSource:
    def find(self, model_id: str, api_key: str | None = None) -> ModelPackage | None:
        if model_id.startswith("missing"):
            return None
        manifest = ModelManifest(model_id=model_id, task=Task.OBJECT_DETECTION, class_names=["a"])
        return ModelPackage(manifest=manifest, weights_path=None)  # type: ignore[arg-type]


class CountingLoader:
    def __init__(self, delay: float = 0.0, fail: set[str] | None = None) -> None:
        self.delay, self.fail, self.calls = delay, fail or set(), []
        self.lock = threading.Lock()

    def __call__(self, model_id: str, package: ModelPackage) -> object:
        with self.lock:
            self.calls.append(model_id)
        time.sleep(self.delay)
        if model_id in self.fail:
            raise ModelPackageError("boom")
        return SimpleNamespace(package=package)


def manager(loader: CountingLoader, max_active: int = 8) -> ModelManager:
    return ModelManager(ModelResolver([FakeSource()]), loader, max_active)  # type: ignore[arg-type]


def test_concurrent_first_requests_share_one_load() -> None:
    loader = CountingLoader(delay=0.3)
    models = manager(loader)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: models.get("p/1"), range(16)))
    assert loader.calls == ["p/1"]
    assert all(result is results[0] for result in results)


def test_least_recently_used_is_evicted_and_pinned_models_stay() -> None:
    loader = CountingLoader()
    models = manager(loader, max_active=2)
    models.pin("pinned/1")
    models.get("a/1")
    models.get("b/1")  # over the limit: a/1 is the oldest unpinned
    assert {m for m in loader.calls} == {"pinned/1", "a/1", "b/1"}
    assert len(models.loaded()) == 2
    models.get("a/1")  # reloaded, b/1 evicted now
    assert loader.calls.count("a/1") == 2
    models.get("pinned/1")
    assert loader.calls.count("pinned/1") == 1


def test_recent_use_protects_a_model_from_eviction() -> None:
    loader = CountingLoader()
    models = manager(loader, max_active=2)
    models.get("a/1")
    models.get("b/1")
    models.get("a/1")  # a/1 is now the most recent
    models.get("c/1")  # evicts b/1
    models.get("a/1")
    assert loader.calls == ["a/1", "b/1", "c/1"]


def test_failed_load_reaches_every_waiter_and_the_next_request_retries() -> None:
    loader = CountingLoader(delay=0.2, fail={"bad/1"})
    models = manager(loader)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(models.get, "bad/1") for _ in range(4)]
        for future in futures:
            with pytest.raises(ModelPackageError):
                future.result()
    assert loader.calls == ["bad/1"]
    with pytest.raises(ModelPackageError):
        models.get("bad/1")
    assert loader.calls == ["bad/1", "bad/1"]
    assert models.loaded() == []


def test_unknown_model_is_not_found_and_remove_clear_work() -> None:
    models = manager(CountingLoader())
    with pytest.raises(ModelNotFoundError):
        models.get("missing/1")
    models.get("a/1")
    assert models.remove("a/1") and not models.remove("a/1")
    models.get("b/1")
    models.clear()
    assert models.loaded() == []



class StoreSource:
    """Packages whose weights are files in a folder, as the model store's are."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find(self, model_id: str, api_key: str | None = None) -> ModelPackage | None:
        weights = self.folder / model_id.replace("/", "_")
        if not weights.exists():
            return None
        manifest = ModelManifest(model_id=model_id, task=Task.OBJECT_DETECTION, class_names=["a"])
        return ModelPackage(manifest=manifest, weights_path=weights)


def test_a_model_removed_from_the_store_leaves_memory_at_its_next_use(tmp_path: Path) -> None:
    """Another process (`visionserve models remove`, a sibling worker) removed it: this one must not keep serving it."""
    (tmp_path / "p_1").write_bytes(b"onnx")
    loader = CountingLoader()
    models = ModelManager(ModelResolver([StoreSource(tmp_path)]), loader, 8)  # type: ignore[arg-type]
    models.pin("p/1")
    assert models.get("p/1") is models.get("p/1") and loader.calls == ["p/1"]
    (tmp_path / "p_1").unlink()
    with pytest.raises(ModelNotFoundError):
        models.get("p/1")
    assert models.loaded() == []
