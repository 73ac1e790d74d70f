"""`InferenceHTTPClient`: the reference client's interface, with a timeout, retries with backoff, input checks
before any request, and results always in input order."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from visionserve.models.aliases import resolve_alias
from visionserve.sdk.config import InferenceConfiguration
from visionserve.sdk.errors import (
    APIKeyNotProvided,
    HTTPCallErrorError,
    HTTPServerConnectionError,
    InvalidModelIdentifier,
    ModelNotSelectedError,
    ModelTaskTypeNotSupportedError,
    WrongClientModeError,
)
from visionserve.sdk.inputs import EncodedImage, encode, flatten, rescale
from visionserve.sdk.pipelines import PipelineCalls
from visionserve.sdk.workflows import WorkflowCall, decode_image, decode_outputs, save_profiler_trace

V0, V1 = "v0", "v1"
RETRY_STATUSES = frozenset({429, 503, 504})
ATTEMPTS = 3
TASK_ROUTES = {
    "object-detection": "/infer/object_detection",
    "instance-segmentation": "/infer/instance_segmentation",
    "classification": "/infer/classification",
    "keypoint-detection": "/infer/keypoints_detection",
    "oriented-object-detection": "/infer/obb",
}
# The reference client talks to these hosted URLs with the legacy routes.
_HOSTED_PREFIXES = tuple(
    f"https://{host}"
    for host in (
        "detect.roboflow.com", "outline.roboflow.com", "classify.roboflow.com", "infer.roboflow.com",
        "serverless.roboflow.com", "serverless.roboflow.one", "serverless.roboflow.eu", "serverless.roboflow-eu.one",
        "asyncinfer.roboflow.com", "asyncinfer.roboflow.one",
    )
)
T = TypeVar("T")


def _backoff(attempt: int) -> float:
    return random.uniform(0, 0.5 * 2**attempt)  # full jitter: 0-0.5 s, then 0-1 s


def _api_message(response: httpx.Response) -> str:
    if "application/json" in response.headers.get("content-type", ""):
        try:
            body = response.json()
        except ValueError:
            return response.text
        if isinstance(body, dict):
            return str(body.get("message") or body.get("detail") or "N/A")
    return response.text


class InferenceHTTPClient(PipelineCalls):
    """A client for visionserve and the Roboflow Inference server.

    `infer` returns the server's JSON as plain dicts (a list for a list of images), so
    `supervision.Detections.from_inference(result)` works on each.
    """

    def __init__(self, api_url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.configuration = InferenceConfiguration()
        self.selected_model: str | None = None
        self._mode = V0 if self.api_url.startswith(_HOSTED_PREFIXES) else V1
        self._http = httpx.Client(timeout=timeout)
        self._descriptions: dict[str, dict[str, Any]] = {}  # model id → registry entry, for task routing

    @classmethod
    def init(cls, api_url: str, api_key: str | None = None) -> InferenceHTTPClient:
        return cls(api_url, api_key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InferenceHTTPClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- mode, model and configuration ---

    @property
    def client_mode(self) -> str:
        return self._mode

    def select_api_v0(self) -> InferenceHTTPClient:
        self._mode = V0
        return self

    def select_api_v1(self) -> InferenceHTTPClient:
        self._mode = V1
        return self

    @contextmanager
    def use_api_v0(self) -> Iterator[InferenceHTTPClient]:
        with self._swapped("_mode", V0):
            yield self

    @contextmanager
    def use_api_v1(self) -> Iterator[InferenceHTTPClient]:
        with self._swapped("_mode", V1):
            yield self

    def select_model(self, model_id: str) -> InferenceHTTPClient:
        self.selected_model = model_id
        return self

    @contextmanager
    def use_model(self, model_id: str) -> Iterator[InferenceHTTPClient]:
        with self._swapped("selected_model", model_id):
            yield self

    def configure(self, configuration: InferenceConfiguration) -> InferenceHTTPClient:
        self.configuration = configuration
        return self

    @contextmanager
    def use_configuration(self, configuration: InferenceConfiguration) -> Iterator[InferenceHTTPClient]:
        with self._swapped("configuration", configuration):
            yield self

    @contextmanager
    def _swapped(self, attribute: str, value: object) -> Iterator[None]:
        previous = getattr(self, attribute)
        setattr(self, attribute, value)
        try:
            yield
        finally:
            setattr(self, attribute, previous)

    # --- server and model management ---

    def get_server_info(self) -> dict[str, Any]:
        return self._request("GET", "/info", retry=False).json()

    def list_loaded_models(self) -> dict[str, Any]:
        self._require_v1()
        return self._request("GET", "/model/registry", params=self._key_params(), retry=False).json()

    def load_model(self, model_id: str, set_as_default: bool = False) -> dict[str, Any]:
        self._require_v1()
        model_id = resolve_alias(model_id)
        registry = self._request(
            "POST", "/model/add", json={"model_id": model_id, "api_key": self.api_key}, retry=False
        ).json()
        if set_as_default:
            self.selected_model = model_id
        return registry

    def unload_model(self, model_id: str) -> dict[str, Any]:
        self._require_v1()
        return self._request("POST", "/model/remove", json={"model_id": resolve_alias(model_id)}, retry=False).json()

    def unload_all_models(self) -> dict[str, Any]:
        self._require_v1()
        return self._request("POST", "/model/clear", retry=False).json()

    def get_model_description(self, model_id: str, allow_loading: bool = True) -> dict[str, Any]:
        """The registry entry of a model, loading it first if allowed."""
        self._require_v1()
        model_id = resolve_alias(model_id)
        registry = self.list_loaded_models()
        found = _find(registry, model_id)
        if found is None and allow_loading:
            found = _find(self.load_model(model_id), model_id)
        if found is None:
            raise HTTPCallErrorError("model is not loaded", 404, f"model {model_id} is not loaded on the server")
        return found

    # --- inference ---

    def infer(self, inference_input: object, model_id: str | None = None) -> dict[str, Any] | list[dict[str, Any]]:
        """Predictions for one image (a dict) or a list of images (a list, same order)."""
        plan = self._plan(inference_input, model_id)
        workers = max(1, self.configuration.max_concurrent_requests)
        if workers == 1 or len(plan.chunks) == 1:
            results = [self._send(plan, chunk) for chunk in plan.chunks]
        else:
            with ThreadPoolExecutor(min(workers, len(plan.chunks))) as pool:
                results = list(pool.map(lambda chunk: self._send(plan, chunk), plan.chunks))
        return plan.unwrap(results)

    async def infer_async(
        self, inference_input: object, model_id: str | None = None
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """As `infer`, with asyncio: up to `max_concurrent_requests` requests in flight."""
        plan = await asyncio.to_thread(self._plan, inference_input, model_id)
        limit = asyncio.Semaphore(max(1, self.configuration.max_concurrent_requests))
        async with httpx.AsyncClient(timeout=self.timeout) as http:

            async def send(chunk: list[EncodedImage]) -> list[dict[str, Any]]:
                async with limit:
                    call = plan.request(self, chunk)
                    response = await self._with_retries_async(lambda: http.request(**call))
                    return plan.parse(self, response, chunk)

            results = await asyncio.gather(*(send(chunk) for chunk in plan.chunks))
        return plan.unwrap(list(results))

    def _plan(self, inference_input: object, model_id: str | None) -> _Plan:
        model_id = resolve_alias(model_id or self.selected_model or "")
        if not model_id:
            raise ModelNotSelectedError("no model: pass model_id= or call select_model() first")
        items = flatten(inference_input)
        configuration = self.configuration
        if self._mode == V0:
            if self.api_key is None:
                raise APIKeyNotProvided("the legacy (v0) routes need an API key")
            if model_id.count("/") != 1:
                raise InvalidModelIdentifier(f"the legacy (v0) routes need a project/version id, not {model_id!r}")
            max_size = None if configuration.client_downsizing_disabled else (configuration.default_max_input_size,) * 2
            images = [encode(item, self._http, max_size) for item in items]
            return _Plan(V0, model_id, "", [[image] for image in images], isinstance(inference_input, (list, tuple)))
        description = self._descriptions.get(model_id) or self.get_model_description(model_id)
        self._descriptions[model_id] = description  # the server loads models on demand, so this stays valid
        task_type = description["task_type"]
        if task_type not in TASK_ROUTES:
            raise ModelTaskTypeNotSupportedError(f"models of task {task_type!r} cannot be used with infer()")
        max_size = None
        if not configuration.client_downsizing_disabled:
            max_size = (
                description.get("input_height") or configuration.default_max_input_size,
                description.get("input_width") or configuration.default_max_input_size,
            )
        images = [encode(item, self._http, max_size) for item in items]
        size = max(1, configuration.max_batch_size)
        chunks = [images[start : start + size] for start in range(0, len(images), size)]
        return _Plan(V1, model_id, task_type, chunks, isinstance(inference_input, (list, tuple)))

    def _send(self, plan: _Plan, chunk: list[EncodedImage]) -> list[dict[str, Any]]:
        call = plan.request(self, chunk)
        return plan.parse(self, self._with_retries(lambda: self._http.request(**call)), chunk)

    # --- workflows ---

    def run_workflow(
        self, workspace_name: str | None = None, workflow_id: str | None = None,
        specification: dict[str, Any] | None = None, images: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None, excluded_fields: list[str] | None = None, use_cache: bool = True,
        enable_profiling: bool = False, workflow_version_id: str | None = None, disable_sinks: bool = False,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Run a workflow given inline (`specification`) or saved on the server (`workspace_name` + `workflow_id`):
        one output dict per input element, images in `output_visualisation_format`. `images` take what `infer`
        takes (a list, or nested lists, for a batch); `parameters` join them in the workflow's inputs."""
        call = WorkflowCall(workspace_name, workflow_id, specification, images, parameters, excluded_fields,
                            use_cache, enable_profiling, workflow_version_id, disable_sinks)  # fmt: skip
        return self._run_workflow(call, legacy=False)

    def infer_from_workflow(
        self, workspace_name: str | None = None, workflow_name: str | None = None,
        specification: dict[str, Any] | None = None, images: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None, excluded_fields: list[str] | None = None, use_cache: bool = True,
        enable_profiling: bool = False, workflow_version_id: str | None = None, disable_sinks: bool = False,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """`run_workflow` on the legacy `/infer/workflows` routes (`workflow_name` is the workflow's id)."""
        call = WorkflowCall(workspace_name, workflow_name, specification, images, parameters, excluded_fields,
                            use_cache, enable_profiling, workflow_version_id, disable_sinks)  # fmt: skip
        return self._run_workflow(call, legacy=True)

    def _run_workflow(self, call: WorkflowCall, legacy: bool) -> list[dict[str, Any]]:
        body = call.payload(self.api_key, lambda image: encode(image, self._http, None).base64)
        answer = self._request("POST", call.path(legacy), json=body).json()
        if call.enable_profiling:
            save_profiler_trace(self.configuration.profiling_directory, answer.get("profiler_trace"))
        return decode_outputs(answer["outputs"], self.configuration.output_visualisation_format)

    # --- plumbing ---

    def _key_params(self) -> dict[str, str]:
        return {"api_key": self.api_key} if self.api_key else {}

    def _require_v1(self) -> None:
        if self._mode != V1:
            raise WrongClientModeError("this call needs the v1 routes: call select_api_v1()")

    def _request(self, method: str, path: str, retry: bool = True, **kwargs: Any) -> httpx.Response:
        call = lambda: self._http.request(method, self.api_url + path, **kwargs)
        return self._with_retries(call) if retry else self._checked(self._connect(call))

    def _connect(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except httpx.TransportError as error:
            raise self._unreachable(error) from None

    def _unreachable(self, error: httpx.TransportError) -> HTTPServerConnectionError:
        return HTTPServerConnectionError(f"cannot reach {self.api_url}: {error or type(error).__name__}")

    def _settle(self, attempt: int, outcome: httpx.Response | httpx.TransportError) -> httpx.Response | None:
        """The answer to return, or None to try again: 429, 503, 504 and connection errors are retried."""
        last = attempt == ATTEMPTS - 1
        if isinstance(outcome, httpx.TransportError):
            if last:
                raise self._unreachable(outcome)
            return None
        return self._checked(outcome) if last or outcome.status_code not in RETRY_STATUSES else None

    def _with_retries(self, call: Callable[[], httpx.Response]) -> httpx.Response:
        for attempt in range(ATTEMPTS):
            try:
                outcome: httpx.Response | httpx.TransportError = call()
            except httpx.TransportError as error:
                outcome = error
            if (answer := self._settle(attempt, outcome)) is not None:
                return answer
            time.sleep(_backoff(attempt))
        raise AssertionError("unreachable: the last attempt always settles")

    async def _with_retries_async(self, call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        for attempt in range(ATTEMPTS):
            try:
                outcome: httpx.Response | httpx.TransportError = await call()
            except httpx.TransportError as error:
                outcome = error
            if (answer := self._settle(attempt, outcome)) is not None:
                return answer
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable: the last attempt always settles")

    @staticmethod
    def _checked(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            description = f"{response.request.method} {response.request.url.copy_remove_param('api_key')} failed"
            raise HTTPCallErrorError(description, response.status_code, _api_message(response))
        return response


def _find(registry: dict[str, Any], model_id: str) -> dict[str, Any] | None:
    return next((model for model in registry.get("models", []) if model.get("model_id") == model_id), None)


class _Plan:
    """One `infer` call: the images, in chunks of one request each, and how to send and read them."""

    def __init__(self, mode: str, model_id: str, task_type: str, chunks: list[list[EncodedImage]], as_list: bool):
        self.mode, self.model_id, self.task_type, self.chunks, self.as_list = mode, model_id, task_type, chunks, as_list

    def request(self, client: InferenceHTTPClient, chunk: list[EncodedImage]) -> dict[str, Any]:
        configuration = client.configuration
        if self.mode == V0:
            return {
                "method": "POST",
                "url": f"{client.api_url}/{self.model_id}",
                "params": {"api_key": client.api_key, **configuration.query_options()},
                "content": chunk[0].base64,
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            }
        images = [{"type": "base64", "value": image.base64} for image in chunk]
        body = {
            "api_key": client.api_key,
            "model_id": self.model_id,
            **configuration.json_options(self.task_type),
            "image": images if len(images) > 1 else images[0],
        }
        return {
            "method": "POST",
            "url": client.api_url + TASK_ROUTES[self.task_type],
            "params": configuration.url_options(),
            "json": body,
        }

    def parse(
        self, client: InferenceHTTPClient, response: httpx.Response, chunk: list[EncodedImage]
    ) -> list[dict[str, Any]]:
        if "image/jpeg" in response.headers.get("content-type", ""):
            results: list[dict[str, Any]] = [{"visualization": base64.b64encode(response.content).decode("ascii")}]
        else:
            body = response.json()
            results = body if isinstance(body, list) else [body]
        if len(results) != len(chunk):
            raise HTTPCallErrorError("unexpected answer", response.status_code,
                                     f"sent {len(chunk)} images, got {len(results)} results")
        visual_format = client.configuration.output_visualisation_format
        return [_decode_visualization(rescale(result, image.scale), visual_format) for result, image in zip(results, chunk)]

    def unwrap(self, chunks: list[list[dict[str, Any]]]) -> dict[str, Any] | list[dict[str, Any]]:
        results = [result for chunk in chunks for result in chunk]
        return results if self.as_list or len(results) != 1 else results[0]


def _decode_visualization(result: dict[str, Any], output_format: str) -> dict[str, Any]:
    if result.get("visualization") is not None:
        result["visualization"] = decode_image(result["visualization"], output_format)
    return result
