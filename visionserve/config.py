"""Server settings, read from `VISIONSERVE_*` environment variables (flags override them)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


def default_home() -> Path:
    return Path("~/.cache/visionserve").expanduser()


class Settings(BaseSettings):
    """Everything an operator can tune. Defaults are safe for a single machine."""

    model_config = SettingsConfigDict(env_prefix="VISIONSERVE_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="Bind address; use 0.0.0.0 only to expose the server.")
    port: int = Field(9001, ge=1, le=65535)
    home: Path = Field(default_factory=default_home, description="Model store and server state.")
    log_level: str = "info"

    device: Literal["auto", "cpu", "cuda", "tensorrt", "openvino"] = Field(
        "auto",
        description="Where models run: auto (a GPU whose provider loads, else OpenVINO where it measured faster, "
        "else the CPU), cpu, cuda, tensorrt or openvino (refused at start-up when it cannot load here).",
    )  # fmt: skip
    execution_providers: CommaList = Field(
        default_factory=list,
        description="Instead of `device`: ONNX Runtime providers in order of preference, e.g. "
        "CUDAExecutionProvider,CPUExecutionProvider (those not in the build or not loading here are skipped).",
    )  # fmt: skip
    tensorrt_fp16: bool = Field(True, description="TensorRT builds FP16 engines (FP32 where a layer needs it).")
    intra_op_threads: int = Field(
        0, ge=0, description="Threads of one forward pass under load; 0: 1 (cores/16 beyond 16 cores)."
    )
    concurrent_runs: int = Field(
        0, ge=0, description="Forward passes side by side under load; 0: cores / intra_op_threads."
    )
    lone_request_threads: int = Field(
        0, ge=0, description="Threads of a lone request's forward pass (a second CPU session); 0: all cores (16 "
        "at most); set it to intra_op_threads to keep one session per model.",
    )  # fmt: skip
    ort_spinning: bool = Field(True, description="Let idle ONNX Runtime threads spin (lower latency, more CPU).")
    malloc_arenas: int = Field(
        2, ge=0, description="glibc malloc arenas the server keeps (its memory stays flat); 0: glibc's default, eight "
        "per core. An explicit MALLOC_ARENA_MAX wins.",
    )  # fmt: skip
    inference_threads: int = Field(
        0, ge=0, description="Worker threads that parse bodies, decode images and run models, so the event loop "
        "never blocks; 0: twice the concurrent runs, at least 4.",
    )  # fmt: skip
    workers: int = Field(1, ge=1, description="Server processes sharing the cores (set by `serve --workers`).")
    weights_api: str = Field(
        "https://api.roboflow.com",
        description="Base URL of a Roboflow-compatible weights API for models not in the store; empty: offline.",
    )
    weights_api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("VISIONSERVE_WEIGHTS_API_KEY", "ROBOFLOW_API_KEY"),
        description="API key for the weights API when a request carries none.",
    )
    weights_api_timeout_s: float = Field(30.0, gt=0)
    preload_models: CommaList = Field(
        default_factory=list, description="Models loaded (and never evicted) before the server reports ready."
    )
    max_active_models: int = Field(8, ge=1, description="Models kept in memory; least recently used go first.")
    max_batch_size: int = Field(16, ge=1, description="Most images in one forward pass of a dynamic-batch model.")
    dynamic_batching: Literal["auto", "on", "off"] = Field(
        "auto", description="Merge the forward passes of requests for one model that wait for the same cores into one "
        "pass; auto: on for accelerators, off on the CPU provider (see the README's measurements).",
    )  # fmt: skip
    dynamic_batching_delay_ms: float | None = Field(
        None, ge=0, le=100, description="How long a merged pass, once it holds a core, waits for more requests to "
        "join; unset: 0 on the CPU provider, 2 on accelerators.",
    )  # fmt: skip
    dynamic_batching_models: dict[str, bool] = Field(
        default_factory=dict, description='Per-model dynamic batching over the server-wide choice, as JSON: '
        '{"my-model/1": true}.',
    )  # fmt: skip

    allow_url_input: bool = Field(True, description="Accept images given as http(s) URLs.")
    url_allow_hosts: CommaList = Field(
        default_factory=list,
        description="Hosts exempt from the public-address rule for image URLs (e.g. an internal image store).",
    )
    allow_numpy_input: bool = Field(
        False, description="Accept `numpy` images (pickled arrays, read by a restricted unpickler, or .npy bytes)."
    )
    api_keys: str = Field(
        "", description="Keys a caller must present (comma-separated, or a file with one a line); empty: open."
    )
    allow_model_management: bool = Field(True, description="Serve /model/add, /model/remove and /model/clear.")
    docs_public: bool = Field(True, description="Serve /docs, /redoc and /openapi.json without a key.")
    metrics_public: bool = Field(True, description="Serve /metrics without a key.")
    cors_origins: CommaList = Field(default_factory=list, description="Origins allowed cross-origin; none by default.")
    log_json: bool = Field(False, description="One JSON object per request log line.")
    max_inflight: int = Field(64, ge=1, description="Inference requests accepted at once; more get 503.")
    request_timeout_s: float = Field(300.0, gt=0, description="Longest an inference request may take (504).")
    shutdown_timeout_s: float = Field(30.0, gt=0, description="On SIGTERM, how long in-flight requests may finish.")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1, description="Largest request body accepted.")
    url_timeout_s: float = Field(10.0, gt=0, description="Total time allowed to download an image URL.")
    url_max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="Largest image download accepted.")
    max_image_pixels: int = Field(50_000_000, ge=1, description="Largest decoded image (width x height).")
    max_batch_images: int = Field(64, ge=1, description="Most images accepted in one request.")
    max_request_pixels: int = Field(
        100_000_000, ge=1, description="Decoded pixels (width x height, summed over its images) one request may hold."
    )
    max_server_pixels: int = Field(
        200_000_000, ge=1, description="Decoded pixels all requests in flight may hold together; beyond: 503."
    )
    max_jpeg_scans: int = Field(100, ge=1, description="Most scans a (progressive) JPEG may have.")
    max_mask_pixels: int = Field(
        250_000_000, ge=1, description="Mask pixels one request may make (each mask counts its box, in answer pixels)."
    )
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="Largest request line plus headers.")
    max_header_count: int = Field(100, ge=1, description="Most header lines in one request.")
    header_timeout_s: float = Field(
        10.0, gt=0, description="Time a connection has to send a request's headers (slow or idle clients are cut)."
    )
    allow_remote_models: bool | None = Field(
        None,
        description="Fetch models the store lacks from the weights API on request; unset: as allow_model_management.",
    )
    weights_api_max_json_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest weights API JSON reply.")
    max_model_bytes: int = Field(2 * 1024**3, ge=1, description="Largest model weights download.")
    max_store_bytes: int = Field(50 * 1024**3, ge=1, description="Disk space the model store may take.")
    weights_api_allow_hosts: CommaList = Field(
        default_factory=list,
        description="Hosts besides the weights API's own exempt from the public-address rule for weights downloads.",
    )
    failed_lookup_ttl_s: float = Field(10.0, ge=0, description="How long a failed weights API lookup is remembered.")
    workflow_max_steps: int = Field(64, ge=1, description="Most steps one workflow definition may have.")
    workflow_max_crops_per_image: int = Field(
        256, ge=1, description="Most crops (or slices) one workflow step may make of one image."
    )
    workflow_max_model_passes: int = Field(
        4096, ge=1, description="Model inferences (one model on one image or crop) one workflow request may run."
    )
    stream_file_roots: CommaList = Field(
        default_factory=list,
        description="Folders whose video files, image folders and devices server-side pipelines may read; none: no "
        "local sources.",
    )
    max_pipelines: int = Field(8, ge=0, description="Stream pipelines running at once (ended ones do not count).")
    max_sources_per_pipeline: int = Field(8, ge=1, description="Video sources one pipeline may read together.")
    stream_buffer_frames: int = Field(
        16, ge=1, le=1024, description="Most decoded frames one source holds (a pipeline's memory stays bounded)."
    )
    stream_results_buffer: int = Field(
        1024, ge=1, description="Most unconsumed results a pipeline may be asked to keep (results_buffer_size)."
    )
    stream_decode_threads: int = Field(1, ge=1, le=8, description="Decoder threads per video source.")

    @field_validator(
        "execution_providers", "url_allow_hosts", "weights_api_allow_hosts", "preload_models", "cors_origins",
        "stream_file_roots", mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _one_provider_setting(self) -> Settings:
        if self.execution_providers and self.device != "auto":
            raise ValueError("set VISIONSERVE_DEVICE or VISIONSERVE_EXECUTION_PROVIDERS, not both")
        return self

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def remote_models_allowed(self) -> bool:
        return self.allow_model_management if self.allow_remote_models is None else self.allow_remote_models

    @property
    def models_dir(self) -> Path:
        return self.home / "models"
