"""Logging set-up for the server: uvicorn's handlers for our loggers too, and API keys never written out."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

# api_key=..., "api_key": "...", and bearer tokens, also as uvicorn's trace level writes headers: (b'authorization', b'Bearer ...')
_SECRET_IN_TEXT = re.compile(
    r"""(api_key=|\\?"api_key\\?"\s*:\s*\\?"|authorization(?:'\s*,\s*b'|:\s*)bearer\s+)[^&\s"'\\]+""", re.IGNORECASE
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def redact(text: str) -> str:
    return _SECRET_IN_TEXT.sub(r"\1***", text)


def escape_controls(text: str) -> str:
    """Line breaks and other control characters as \\xNN, so a request path cannot forge log lines."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _clean(value: object) -> object:
    """Numbers as they are (for %d); anything else as text, secrets masked and control characters escaped. Bytes
    and containers (uvicorn's trace level logs whole ASGI messages) become text first, so they are masked too."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return escape_controls(redact(value if isinstance(value, str) else str(value)))


class RedactSecrets(logging.Filter):
    """Masks `api_key` values and bearer tokens, and escapes control characters, in messages and their arguments
    (uvicorn logs full URLs, and at trace level raw headers and bodies)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _clean(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _clean(value) for name, value in record.args.items()}
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
