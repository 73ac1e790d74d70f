"""Models in memory: loaded on first use, one load per id however many requests ask at once,
least recently used evicted beyond the limit.

A load runs in a thread of its own, so a caller may stop waiting without stopping the load: while a model's
TensorRT engine is being built (minutes, the first time), requests for it get a 503 with Retry-After and the
build carries on.

A request holds its own reference to the model it runs, so evicting a model never breaks an inference
that is already under way; memory is freed when the last such request finishes. A model removed from the store
leaves memory at its next use, whichever process removed it.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from visionserve.errors import ServiceUnavailableError
from visionserve.models.ids import validate_model_id
from visionserve.models.loader import LoadedModel
from visionserve.models.manifest import ModelPackage
from visionserve.models.resolver import ModelResolver
from visionserve.runtime.engines import Build, SessionBuilds

Loader = Callable[[str, ModelPackage], LoadedModel]
WAIT_SLICE_S = 0.25  # how often a waiting caller looks whether the load has become an engine build
ENGINE_RETRY_AFTER_S = 10


class EngineBuildingError(ServiceUnavailableError):
    headers = {"Retry-After": str(ENGINE_RETRY_AFTER_S)}

    def __init__(self, model_id: str, state: str) -> None:
        super().__init__(f"Model {model_id} is not ready: {state} (a TensorRT engine, built once) - retry request.")


class ModelManager:
    def __init__(
        self,
        resolver: ModelResolver,
        loader: Loader,
        max_active: int,
        load_wait_s: float = 300.0,
        builds: SessionBuilds | None = None,
    ) -> None:
        self._resolver = resolver
        self._loader = loader
        self._max_active = max_active
        self._load_wait_s = load_wait_s
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loading: dict[str, Future[LoadedModel]] = {}
        self._pinned: set[str] = set()
        self._lock = threading.Lock()
        self._builds = builds or SessionBuilds()

    def get(self, model_id: str, api_key: str | None = None, allow_remote: bool = True) -> LoadedModel:
        """The loaded model, loading it if needed; concurrent callers share one load. The API key is used only
        to fetch a model from a remote source (asked only when `allow_remote`); a model in memory is served to
        any caller."""
        validate_model_id(model_id)
        with self._lock:
            model = self._models.get(model_id)
            if model is not None and _removed_from_store(model):
                del self._models[model_id]
                self._pinned.discard(model_id)
            elif model is not None:
                self._models.move_to_end(model_id)
                return model
            pending = self._loading.get(model_id)
            loading_here = pending is None
            if pending is None:
                pending = self._loading[model_id] = Future()
        if loading_here:
            context = contextvars.copy_context()  # the caller's request id and log context
            loader = threading.Thread(
                target=context.run, args=(self._load, model_id, api_key, allow_remote, pending), daemon=True,
                name=f"load-{model_id}",
            )  # fmt: skip
            loader.start()
        return self._wait(model_id, pending)

    def _wait(self, model_id: str, pending: Future[LoadedModel]) -> LoadedModel:
        """The load's outcome; a 503 once it is an engine build, or when it outlasts `load_wait_s`."""
        deadline = time.monotonic() + self._load_wait_s
        while True:
            try:
                return pending.result(timeout=max(0.0, min(WAIT_SLICE_S, deadline - time.monotonic())))
            except FutureTimeout:
                pass
            build = self._builds.get(model_id)
            if build is not None and build.engine:
                raise EngineBuildingError(model_id, build.state)
            if time.monotonic() >= deadline:
                raise ServiceUnavailableError(
                    f"Model {model_id} is still loading after {self._load_wait_s:.0f} s - retry request."
                )

    def _load(self, model_id: str, api_key: str | None, allow_remote: bool, pending: Future[LoadedModel]) -> None:
        try:
            model = self._loader(model_id, self._resolver.resolve(model_id, api_key, allow_remote))
        except BaseException as error:
            with self._lock:
                del self._loading[model_id]
            pending.set_exception(error)
            return
        with self._lock:
            self._models[model_id] = model
            del self._loading[model_id]
            self._evict_beyond_limit()
        pending.set_result(model)

    def building(self) -> list[Build]:
        """Sessions of models being loaded right now, for /model/registry."""
        return self._builds.current()

    def pin(self, model_id: str, api_key: str | None = None) -> LoadedModel:
        """Load a model that eviction must never drop (models named at start-up)."""
        model = self.get(model_id, api_key)
        with self._lock:
            self._pinned.add(model_id)
        return model

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())

    def remove(self, model_id: str) -> bool:
        with self._lock:
            self._pinned.discard(model_id)
            return self._models.pop(model_id, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._pinned.clear()

    def _evict_beyond_limit(self) -> None:
        """Drop least recently used, unpinned models until the limit holds (caller holds the lock).

        The newest model always stays, so pinned models may push the count over the limit."""
        for model_id in list(self._models)[:-1]:
            if len(self._models) <= self._max_active:
                return
            if model_id not in self._pinned:
                del self._models[model_id]


def _removed_from_store(model: LoadedModel) -> bool:
    """Its weights file is gone: `visionserve models remove` (from any process) took it out of the store, so every
    worker process of a server lets it go at its next use, not only the one that answered `/model/remove`."""
    package = model.package
    return not package.builtin and package.weights_path is not None and not package.weights_path.exists()
