"""The visionserve Python client, interface-compatible with the reference's `inference_sdk`.

    from visionserve.sdk import InferenceHTTPClient
    client = InferenceHTTPClient(api_url="http://127.0.0.1:9001")
    result = client.infer("photo.jpg", model_id="nudenet/1")
    outputs = client.run_workflow(specification=definition, images={"image": "photo.jpg"})
"""

from visionserve.sdk.client import InferenceHTTPClient
from visionserve.sdk.config import InferenceConfiguration
from visionserve.sdk.errors import (
    APIKeyNotProvided,
    HTTPCallErrorError,
    HTTPClientError,
    HTTPServerConnectionError,
    InvalidModelIdentifier,
    InvalidParameterError,
    ModelNotSelectedError,
    ModelTaskTypeNotSupportedError,
    WrongClientModeError,
)

__all__ = [
    "APIKeyNotProvided",
    "HTTPCallErrorError",
    "HTTPClientError",
    "HTTPServerConnectionError",
    "InferenceConfiguration",
    "InferenceHTTPClient",
    "InvalidModelIdentifier",
    "InvalidParameterError",
    "ModelNotSelectedError",
    "ModelTaskTypeNotSupportedError",
    "WrongClientModeError",
]
