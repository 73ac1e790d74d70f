"""The visionserve Python client, interface-compatible with the reference's `inference_sdk`.

    from visionserve.sdk import InferenceHTTPClient
    client = InferenceHTTPClient(api_url="http://127.0.0.1:9001")
    result = client.infer("photo.jpg", model_id="nudenet/1")
    outputs = client.run_workflow(specification=definition, images={"image": "photo.jpg"})
    pipeline = client.start_inference_pipeline(model_id="nudenet/1", video_reference="rtsp://camera/stream")

    from visionserve.sdk import InferencePipeline  # no server: the pipeline runs in this process
    InferencePipeline.init(video_reference="video.mp4", model_id="nudenet/1", on_prediction=print).start()
"""

from typing import Any


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
    "InferencePipeline",
    "InvalidModelIdentifier",
    "InvalidParameterError",
    "ModelNotSelectedError",
    "ModelTaskTypeNotSupportedError",
    "WrongClientModeError",
]


def __getattr__(name: str) -> Any:
    """`InferencePipeline` loads the server's parts (ONNX Runtime, PyAV): only when asked for."""
    if name == "InferencePipeline":
        from visionserve.streams.inprocess import InferencePipeline

        return InferencePipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
