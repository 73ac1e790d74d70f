"""Errors a user can cause or fix, each carrying the HTTP status and the message the API returns.

The texts follow the reference server's public messages where clients may match on them.
"""

from __future__ import annotations

from collections.abc import Sequence


def with_article(noun: str) -> str:
    """`an object-detection`, `a classification`: messages name kinds of models in plain English."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


class VisionServeError(Exception):
    """Base for every error that is mapped to a JSON `{"message": ...}` response."""

    status_code: int = 500
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)  # not super(): HTTP layers may mix in their own exception classes
        self.message = message


class InputImageError(VisionServeError):
    """The request's image could not be read; the cause is shown to the caller."""

    status_code = 400

    def __init__(self, cause: str) -> None:
        super().__init__(f"Could not load input image. Cause: {cause}")
        self.cause = cause


class InvalidRequestError(VisionServeError):
    status_code = 400


class PayloadTooLargeError(VisionServeError):
    status_code = 413


class InvalidModelIdError(VisionServeError):
    status_code = 400

    def __init__(self, model_id: object) -> None:
        super().__init__(
            f"Invalid Model ID sent in request: {model_id!r}. Expected 'project/version' made of letters, "
            "digits, '.', '_' and '-'."
        )


class ModelNotFoundError(VisionServeError):
    """No source has the model. `elsewhere` says why nothing beyond this server found it (not asked, not
    reachable, not known there either); `suggestions` are the nearest ids this server does have."""

    status_code = 404

    def __init__(self, model_id: str, elsewhere: str | None = None, suggestions: Sequence[str] = ()) -> None:
        where = f": it is neither in this server's store nor built in, and {elsewhere}" if elsewhere else ""
        guess = ""
        if suggestions:
            names = f"{', '.join(suggestions[:-1])} or {suggestions[-1]}" if len(suggestions) > 1 else suggestions[0]
            guess = f" Did you mean {names}?"
        super().__init__(
            f"Model '{model_id}' not found{where}.{guess} Add local models with `visionserve models add`."
        )


class ModelPackageError(VisionServeError):
    """The weights or manifest on disk cannot be served (broken file, unsupported layout)."""

    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(f"Model package is broken: {detail}")
        self.detail = detail


class CheckpointExportError(VisionServeError):
    """A training checkpoint cannot be turned into ONNX: its family unknown, its package missing, its export failed.
    Raised by `models add` only; the message says what to install or pass."""

    status_code = 400


class TaskNotSupportedError(VisionServeError):
    status_code = 501


class ClientClosedRequest(VisionServeError):
    """The client went away before the answer was ready (nginx's 499); nobody reads this response."""

    status_code = 499

    def __init__(self) -> None:
        super().__init__("The client closed the connection before the answer was ready.")


class RequestTimeoutError(VisionServeError):
    status_code = 504


class ServiceUnavailableError(VisionServeError):
    """A transient condition; clients (including the official SDK) retry these."""

    status_code = 503
    headers = {"Retry-After": "1"}


class InsufficientStorageError(VisionServeError):
    """The disk (or the model store's quota) has no room for what was asked."""

    status_code = 507
