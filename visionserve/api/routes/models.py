"""Model management, as the reference server and the official SDK know it: `/model/add|remove|clear|registry`.

Every route answers with the registry of loaded models; unlike inference responses, null fields are kept.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from visionserve.api.keys import json_route_key
from visionserve.api.routes.infer import ERROR_RESPONSES, TASK_PATHS
from visionserve.api.state import ServerState, get_state
from visionserve.errors import VisionServeError
from visionserve.models.aliases import resolve_alias
from visionserve.models.builtin import NEUTRAL_MODEL_ID, BuiltinModels
from visionserve.models.ids import validate_model_id
from visionserve.models.loader import LoadedModel

router = APIRouter(tags=["models"])


class ManagementDisabledError(VisionServeError):
    status_code = 403

    def __init__(self) -> None:
        super().__init__("Model management is disabled on this server (VISIONSERVE_ALLOW_MODEL_MANAGEMENT=0).")


class ModelAddRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_id: str = Field(description="`project/version`, a built-in id, or a public alias such as yolov8n-640.")
    model_type: str | None = Field(None, description="Ignored, as in the reference.")
    api_key: str | None = Field(None, description="Forwarded to the weights API to download the model.")


class ModelRemoveRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_id: str


class ModelDescription(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    task_type: str
    batch_size: int | None = Field(description="Fixed batch size, or null for a dynamic batch axis.")
    input_height: int | None
    input_width: int | None
    vram_bytes: int | None = None
    request_aliases: list[str] = Field(default_factory=list)
    request_paths: list[str] = Field(default_factory=list)
    execution_provider: str | None = Field(
        None, description="The ONNX Runtime provider the model's session runs on (a visionserve addition)."
    )
    lone_request_provider: str | None = Field(
        None, description="The provider of the session over every core for requests that come alone, if any."
    )


class ModelBuilding(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    execution_provider: str
    state: str = Field(description="`building engine, N s` (TensorRT) or `creating session, N s`.")
    seconds: float


class ModelsDescriptions(BaseModel):
    models: list[ModelDescription]
    total_vram_bytes: int | None = None
    gpu_memory_used: int | None = None
    gpu_memory_total: int | None = None
    torch_cuda_allocated: int | None = None
    torch_cuda_reserved: int | None = None
    torch_cuda_allocator_cache: int | None = None
    non_torch_gpu_memory: int | None = None
    building: list[ModelBuilding] = Field(
        default_factory=list, description="Models whose session is being created now (a visionserve addition)."
    )


class CatalogEntry(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    task_type: str
    infer_path: str = Field(description="The `/infer/*` route that serves this model's task.")
    class_names: list[str]
    source: str = Field(description="`store` or `built in`; `memory` for a model loaded but no longer stored.")
    loaded: bool


class ModelCatalog(BaseModel):
    models: list[CatalogEntry]
    default_model_id: str | None = Field(description="The built-in model a new user starts with, when present.")


def describe(model: LoadedModel) -> ModelDescription:
    height, width = model.predictor.input_hw
    return ModelDescription(
        model_id=model.model_id,
        task_type=model.task.value,
        batch_size=model.predictor.runner.batch_size,
        input_height=height,
        input_width=width,
        execution_provider=model.predictor.runner.provider,
        lone_request_provider=model.predictor.runner.lone_provider,
    )


def registry(state: ServerState) -> ModelsDescriptions:
    building = [
        ModelBuilding(model_id=build.label, execution_provider=build.provider, state=build.state,
                      seconds=round(build.seconds, 1))
        for build in state.manager.building()
    ]  # fmt: skip
    return ModelsDescriptions(models=[describe(model) for model in state.manager.loaded()], building=building)


State = Annotated[ServerState, Depends(get_state)]
_BUILTIN = BuiltinModels()  # reads each built-in model's metadata once


def catalog(state: ServerState) -> ModelCatalog:
    """Every model this server can run without downloading: the store, the built-in ones, and those in memory."""
    loaded = {model.model_id: model.manifest for model in state.manager.loaded()}
    sources = {manifest.model_id: (manifest, "store") for manifest in state.store.list()}
    for model_id in _BUILTIN.ids():
        package = _BUILTIN.find(model_id)
        if package is not None and model_id not in sources:
            sources[model_id] = (package.manifest, "built in")
    for model_id, manifest in loaded.items():
        sources.setdefault(model_id, (manifest, "memory"))
    return ModelCatalog(
        default_model_id=NEUTRAL_MODEL_ID if NEUTRAL_MODEL_ID in sources else None,
        models=[
            CatalogEntry(
                model_id=model_id,
                task_type=manifest.task.value,
                infer_path=TASK_PATHS[manifest.task],
                class_names=list(manifest.class_names),
                source=source,
                loaded=model_id in loaded,
            )
            for model_id, (manifest, source) in sorted(sources.items())
        ],
    )


def _check_management_allowed(state: ServerState) -> None:
    if not state.settings.allow_model_management:
        raise ManagementDisabledError()


@router.get("/model/registry", response_model=ModelsDescriptions, summary="Models loaded in memory")
async def model_registry(state: State) -> ModelsDescriptions:
    return registry(state)


@router.get("/model/catalog", response_model=ModelCatalog, summary="Models this server can run without downloading")
async def model_catalog(state: State) -> ModelCatalog:
    return await state.in_worker(catalog, state)


@router.post(
    "/model/add",
    response_model=ModelsDescriptions,
    responses=ERROR_RESPONSES,
    summary="Load a model (downloading it first if needed)",
)
async def model_add(body: ModelAddRequest, request: Request, state: State) -> ModelsDescriptions:
    _check_management_allowed(state)
    model_id = validate_model_id(resolve_alias(body.model_id))
    await state.in_worker(state.manager.get, model_id, state.request_key(json_route_key(request, body.api_key)))
    return registry(state)


@router.post("/model/remove", response_model=ModelsDescriptions, responses=ERROR_RESPONSES, summary="Unload a model")
async def model_remove(body: ModelRemoveRequest, state: State) -> ModelsDescriptions:
    _check_management_allowed(state)
    state.manager.remove(validate_model_id(resolve_alias(body.model_id)))
    return registry(state)


@router.post("/model/clear", response_model=ModelsDescriptions, summary="Unload every model")
async def model_clear(state: State) -> ModelsDescriptions:
    _check_management_allowed(state)
    state.manager.clear()
    return registry(state)
