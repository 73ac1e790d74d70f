"""Finding a model id's package: each source in turn, first match wins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from visionserve.errors import ModelNotFoundError
from visionserve.models.ids import validate_model_id
from visionserve.models.manifest import ModelPackage


class ModelSource(Protocol):
    def find(self, model_id: str, api_key: str | None = None) -> ModelPackage | None:
        """The package, or None if this source does not have the model; `api_key` is for remote sources."""
        ...


class ModelResolver:
    def __init__(self, sources: Sequence[ModelSource], remote_sources: Sequence[ModelSource] = ()) -> None:
        self.sources = list(sources)
        self.remote_sources = list(remote_sources)  # fetch over the network, after every local source

    def resolve(self, model_id: str, api_key: str | None = None, allow_remote: bool = True) -> ModelPackage:
        """The first source's package; remote sources are asked only when `allow_remote`."""
        validate_model_id(model_id)
        for source in [*self.sources, *(self.remote_sources if allow_remote else [])]:
            package = source.find(model_id, api_key)
            if package is not None:
                return package
        if self.remote_sources and not allow_remote:
            raise ModelNotFoundError(model_id, remote_refused=True)
        raise ModelNotFoundError(model_id)
