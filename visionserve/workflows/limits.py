"""The server's caps on what one workflow may cost, each named by the setting an operator changes."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from visionserve.workflows.errors import WorkflowLimitError


@dataclass(frozen=True)
class WorkflowLimits:
    max_steps: int = 64
    max_crops_per_image: int = 256
    max_model_passes: int = 4096  # one model on one image or crop is one pass

    @classmethod
    def of(cls, settings: Any) -> WorkflowLimits:
        """The caps a server's settings name (VISIONSERVE_WORKFLOW_MAX_*)."""
        return cls(settings.workflow_max_steps, settings.workflow_max_crops_per_image,
                   settings.workflow_max_model_passes)  # fmt: skip

    def check_steps(self, count: int) -> None:
        if count > self.max_steps:
            raise WorkflowLimitError(
                f"The workflow has {count} steps, more than this server runs ({self.max_steps}, "
                "VISIONSERVE_WORKFLOW_MAX_STEPS).", 422,
            )  # fmt: skip

    def check_crops(self, count: int, step: str) -> None:
        if count > self.max_crops_per_image:
            raise WorkflowLimitError(
                f"it would make {count} crops of one image, more than this server allows ({self.max_crops_per_image}, "
                "VISIONSERVE_WORKFLOW_MAX_CROPS_PER_IMAGE).", 413, step,
            )  # fmt: skip


class PassCounter:
    """Model passes one run has used; a step that would go over the cap fails before its model runs."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()  # steps run side by side

    def take(self, count: int, step: str) -> None:
        with self._lock:
            self._take(count, step)

    def _take(self, count: int, step: str) -> None:
        if self.used + count > self.limit:
            raise WorkflowLimitError(
                f"running its model on {count} more images would make {self.used + count} model passes in this "
                f"request, more than this server allows ({self.limit}, VISIONSERVE_WORKFLOW_MAX_MODEL_PASSES).",
                413, step,
            )  # fmt: skip
        self.used += count
