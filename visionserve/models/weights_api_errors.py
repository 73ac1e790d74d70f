"""What can go wrong with a weights API, each as the HTTP status the server answers with: a rejected or
insufficient key (401, 403), an API that is down (503, with Retry-After) or unreachable, slow (504) or that answers
nonsense (502)."""

from __future__ import annotations

from visionserve.errors import VisionServeError


class WeightsApiKeyRejected(VisionServeError):
    status_code = 401

    def __init__(self) -> None:
        super().__init__(
            "Unauthorized access to the weights API - check the API key and make sure it is valid for the "
            "workspace of this model."
        )


class WeightsApiForbidden(VisionServeError):
    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "Unauthorized access to the weights API - the API key is valid but lacks access to this model "
            "or the scopes it needs."
        )


class WeightsApiUnavailable(VisionServeError):
    status_code = 503
    headers = {"Retry-After": "5"}


class WeightsApiUnreachable(WeightsApiUnavailable):
    """No connection to the API at all (refused, no route, no DNS): it cannot say whether a model exists, so
    an id no local source has is answered as not found rather than as an outage."""

    def __init__(self, message: str, api_url: str) -> None:
        super().__init__(message)
        self.api_url = api_url


class WeightsApiTimeout(VisionServeError):
    status_code = 504


class WeightsApiBadResponse(VisionServeError):
    status_code = 502
