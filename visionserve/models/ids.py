"""Model ids: `project/version` (or one segment), restricted to characters that are safe as path parts."""

from __future__ import annotations

import re

from visionserve.errors import InvalidModelIdError

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_MODEL_ID = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})?")


def validate_model_id(value: object) -> str:
    """Return the id unchanged if it is well formed, else raise a 400 error.

    Segments never start with '.', so an id can never name a parent directory.
    """
    if not isinstance(value, str) or not _MODEL_ID.fullmatch(value):
        raise InvalidModelIdError(value)
    return value
