"""Workflow definitions saved on this server (`visionserve workflows add FILE --id NAME`), for the saved-workflow
routes (`/{workspace}/workflows/{workflow_id}`): the reference fetches those from the vendor's cloud, which an
offline server cannot, so they are looked up here by id. The workspace part of the route is not a local notion
and is not part of the key.

One JSON file per definition in `$VISIONSERVE_HOME/workflows/`, written to a temporary file and renamed, so a
reader never sees half a definition.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionserve.errors import InvalidRequestError, VisionServeError

_WORKFLOW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # never starts with '.': no parent folder
MAX_DEFINITION_BYTES = 1024 * 1024
REQUIRED_KEYS = ("version", "inputs", "steps", "outputs")


class SavedWorkflowNotFound(VisionServeError):
    status_code = 404

    def __init__(self, workflow_id: str, saved: list[str]) -> None:
        known = f" Saved here: {', '.join(saved)}." if saved else " None is saved here."
        super().__init__(
            f"Workflow {workflow_id!r} is not saved on this server. Definitions are not fetched from Roboflow's "
            f"cloud (this server works offline): save one with `visionserve workflows add FILE --id "
            f"{workflow_id}`, or send it inline to POST /workflows/run as `specification`.{known}"
        )


def validate_workflow_id(value: object) -> str:
    if not isinstance(value, str) or not _WORKFLOW_ID.fullmatch(value):
        raise InvalidRequestError(
            f"Invalid workflow id {value!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit "
            "(at most 128 characters)."
        )
    return value


def parse_definition(text: str | bytes) -> dict[str, Any]:
    """A definition's JSON object, with the four keys every definition has; deeper checks are the compiler's."""
    if len(text) > MAX_DEFINITION_BYTES:
        raise InvalidRequestError(f"A workflow definition may take {MAX_DEFINITION_BYTES} bytes, not {len(text)}.")
    try:
        definition = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidRequestError(f"The workflow definition is not valid JSON: {error}.") from None
    if isinstance(definition, dict) and "specification" in definition and "steps" not in definition:
        definition = definition["specification"]  # a saved /workflows/run request body
    if not isinstance(definition, dict):
        raise InvalidRequestError("A workflow definition is a JSON object with version, inputs, steps and outputs.")
    missing = [key for key in REQUIRED_KEYS if key not in definition]
    if missing:
        raise InvalidRequestError(f"The workflow definition lacks {', '.join(missing)}.")
    return definition


@dataclass(frozen=True)
class SavedWorkflow:
    workflow_id: str
    definition: dict[str, Any]

    @property
    def summary(self) -> str:
        steps = self.definition.get("steps") or []
        types = sorted({str(step.get("type")) for step in steps if isinstance(step, dict)})
        return f"{len(steps)} steps ({', '.join(types) or 'none'})"


class SavedWorkflows:
    def __init__(self, home: Path) -> None:
        self.folder = home / "workflows"

    def _path(self, workflow_id: str) -> Path:
        return self.folder / f"{validate_workflow_id(workflow_id)}.json"

    def add(self, workflow_id: str, definition: dict[str, Any], replace: bool = False) -> SavedWorkflow:
        path = self._path(workflow_id)
        if path.exists() and not replace:
            raise InvalidRequestError(f"Workflow {workflow_id!r} is already saved; --force replaces it.")
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".adding-", suffix=".json")
        with os.fdopen(handle, "w") as file:
            json.dump(definition, file, indent=2)
        os.replace(temporary, path)
        return SavedWorkflow(workflow_id, definition)

    def get(self, workflow_id: str) -> SavedWorkflow:
        try:
            text = self._path(workflow_id).read_text()
        except FileNotFoundError:
            raise SavedWorkflowNotFound(workflow_id, self.ids()) from None
        return SavedWorkflow(workflow_id, json.loads(text))

    def ids(self) -> list[str]:
        return sorted(path.stem for path in self.folder.glob("*.json") if not path.name.startswith("."))

    def remove(self, workflow_id: str) -> bool:
        try:
            self._path(workflow_id).unlink()
        except FileNotFoundError:
            return False
        return True
