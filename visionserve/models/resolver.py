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
    def __init__(self, sources: Sequence[ModelSource]) -> None:
        self.sources = list(sources)

    def resolve(self, model_id: str, api_key: str | None = None) -> ModelPackage:
        validate_model_id(model_id)
        for source in self.sources:
            package = source.find(model_id, api_key)
            if package is not None:
                return package
        raise ModelNotFoundError(model_id)
