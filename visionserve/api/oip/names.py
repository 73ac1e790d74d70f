"""Protocol model names and versions ↔ visionserve model ids: `{project}/{version}` is model `project` at
version `version`; a name without a version is the single-segment id of that name (public aliases resolve as
elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass

from visionserve.models.aliases import resolve_alias
from visionserve.models.ids import validate_model_id


@dataclass(frozen=True)
class ModelName:
    name: str
    version: str | None = None

    @property
    def model_id(self) -> str:
        """The visionserve id (a 400 when malformed)."""
        return validate_model_id(
            resolve_alias(self.name if self.version is None else f"{self.name}/{self.version}")
        )
