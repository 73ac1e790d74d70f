"""Finding a model id's package: each source in turn, first match wins; a miss names the nearest ids there are."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from visionserve.errors import ModelNotFoundError
from visionserve.models.aliases import ALIASES
from visionserve.models.ids import validate_model_id
from visionserve.models.manifest import ModelPackage
from visionserve.models.weights_api_errors import WeightsApiUnreachable

MAX_SUGGESTIONS = 3


class ModelSource(Protocol):
    def find(self, model_id: str, api_key: str | None = None) -> ModelPackage | None:
        """The package, or None if this source does not have the model; `api_key` is for remote sources."""
        ...


@runtime_checkable
class ListedSource(Protocol):
    def ids(self) -> list[str]:
        """Every id this source has, for suggestions after a typo."""
        ...


def closest_ids(model_id: str, known: Iterable[str], limit: int = MAX_SUGGESTIONS) -> list[str]:
    """The known ids nearest to a mistyped one: near whole ids, then every version of a near project name, so
    `nudnet/1`, `nudenet/2` and `nudenet` all lead to `nudenet/1`."""
    candidates = sorted(set(known))
    by_project: dict[str, list[str]] = {}
    for candidate in candidates:
        by_project.setdefault(candidate.split("/")[0], []).append(candidate)
    near = difflib.get_close_matches(model_id, candidates, n=limit)
    projects = difflib.get_close_matches(model_id.split("/")[0], list(by_project), n=limit)
    return list(dict.fromkeys([*near, *(found for project in projects for found in by_project[project])]))[:limit]


class ModelResolver:
    def __init__(self, sources: Sequence[ModelSource], remote_sources: Sequence[ModelSource] = ()) -> None:
        self.sources = list(sources)
        self.remote_sources = list(remote_sources)  # fetch over the network, after every local source

    def resolve(self, model_id: str, api_key: str | None = None, allow_remote: bool = True) -> ModelPackage:
        """The first source's package; remote sources are asked only when `allow_remote`. An unreachable weights
        API cannot say the model exists, so a model no local source has is not found (404), not an outage."""
        validate_model_id(model_id)
        for source in self.sources:
            package = source.find(model_id, api_key)
            if package is not None:
                return package
        if not self.remote_sources:
            elsewhere = "no weights API is configured to fetch it from (VISIONSERVE_WEIGHTS_API)"
        elif not allow_remote:
            elsewhere = "this server does not fetch models on request (VISIONSERVE_ALLOW_REMOTE_MODELS)"
        else:
            elsewhere = "the weights API does not know it either"
            for source in self.remote_sources:
                try:
                    package = source.find(model_id, api_key)
                except WeightsApiUnreachable as error:
                    elsewhere = f"the weights API at {error.api_url} could not be reached to look it up"
                    continue
                except ModelNotFoundError:
                    continue
                if package is not None:
                    return package
        raise ModelNotFoundError(model_id, elsewhere, closest_ids(model_id, self.local_ids()))

    def local_ids(self) -> list[str]:
        """The ids this server has without any download, and the public aliases."""
        listed = (model_id for source in self.sources if isinstance(source, ListedSource) for model_id in source.ids())
        return [*listed, *ALIASES]
