"""Errors the client raises. Names follow the reference client's, so code written for it keeps working."""

from __future__ import annotations


class HTTPClientError(Exception):
    """Base of every client error."""


class HTTPCallErrorError(HTTPClientError):
    """The server answered with an error status; `api_message` is its JSON `message` (or `detail`)."""

    def __init__(self, description: str, status_code: int, api_message: str) -> None:
        super().__init__(f"{description} (HTTP {status_code}): {api_message}")
        self.description = description
        self.status_code = status_code
        self.api_message = api_message


class HTTPServerConnectionError(HTTPClientError):
    """The server could not be reached (after retries) or did not answer in time."""


class ModelNotSelectedError(HTTPClientError):
    pass


class ModelTaskTypeNotSupportedError(HTTPClientError):
    pass


class WrongClientModeError(HTTPClientError):
    pass


class APIKeyNotProvided(HTTPClientError):
    pass


class InvalidModelIdentifier(HTTPClientError):
    pass


class InvalidParameterError(HTTPClientError):
    """A call's arguments cannot be used together (e.g. a workflow both named and given inline)."""
