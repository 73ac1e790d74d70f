"""Logging set-up for the server: uvicorn's handlers for our loggers too, and API keys never written out."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_SECRET_IN_TEXT = re.compile(r"(api_key=|authorization:\s*bearer\s+)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRET_IN_TEXT.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Masks `api_key=...` and bearer tokens in messages and their arguments (uvicorn logs full URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config, with our loggers on its handlers and secrets masked on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": RedactSecrets}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["visionserve"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    for noisy in ("httpx", "httpcore", "filelock"):  # request URLs of the weights API carry the key
        config["loggers"][noisy] = {"level": "WARNING"}
    return config
