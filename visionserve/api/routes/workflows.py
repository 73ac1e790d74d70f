"""Workflow routes, with the reference's spellings (current and legacy). Registered before the legacy
`/{project}/{version}` route, which would otherwise take `/workflows/run` and `/infer/workflows` for a model id.

Runs go through `run_guarded` like `/infer` (back-pressure, deadline, cancellation), behind the same access keys,
and every model step through the core; errors come back in the reference's `WorkflowErrorResponse` shape.
(No `from __future__ import annotations`: the routes are built in functions, so FastAPI needs real types.)
"""

import functools
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, RootModel

from visionserve.api.body import OffLoopBodyRoute
from visionserve.api.keys import json_route_key
from visionserve.api.schemas import ErrorResponse
from visionserve.api.state import ServerState
from visionserve.workflows.describe import EXECUTION_ENGINE_VERSIONS, blocks_description, definition_schema
from visionserve.workflows.errors import WorkflowError
from visionserve.workflows.interface import describe_interface, step_outputs
from visionserve.workflows.limits import WorkflowLimits
from visionserve.workflows.runner import WorkflowRun, compile_plan, run_workflow
from visionserve.workflows.saved import SavedWorkflows

router = APIRouter(tags=["workflows"])
RESPONSES = {
    400: {"model": ErrorResponse, "description": "The definition or its inputs cannot be used; the step is named."},
    404: {"model": ErrorResponse, "description": "No saved workflow (or model) with this id."},
    413: {"model": ErrorResponse, "description": "Over a workflow cap (crops per image, model passes)."},
    422: {"model": ErrorResponse, "description": "Over the steps cap, or the request body is malformed."},
}


class _RunFields(BaseModel):
    model_config = ConfigDict(extra="ignore")  # the SDK sends fields some routes do not use (use_cache)

    api_key: str | None = None
    inputs: dict[str, Any]
    excluded_fields: list[str] | None = None
    enable_profiling: bool = False
    debug: bool = False
    workflow_id: str | None = None
    disable_sinks: bool = False


class WorkflowSpecificationRequest(_RunFields):
    specification: dict[str, Any] = Field(description="The workflow definition: version, inputs, steps, outputs.")
    is_preview: bool = False


class PredefinedWorkflowRequest(_RunFields):
    use_cache: bool = True
    workflow_version_id: str | None = None


class DefinitionBody(RootModel[dict[str, Any]]):
    """A workflow definition, as the body of /workflows/validate."""


def _error(error: WorkflowError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


async def _answered(work: Callable[[], Any]) -> Response:
    try:
        return await work()
    except WorkflowError as error:
        return _error(error)


async def _run(request: Request, body: _RunFields, definition: Any) -> Response:
    state: ServerState = request.app.state.visionserve
    run = WorkflowRun(
        definition=definition, inputs=body.inputs, request_id=str(uuid.uuid4()),
        excluded_fields=frozenset(body.excluded_fields or ()), enable_profiling=body.enable_profiling,
        api_key=state.request_key(json_route_key(request, body.api_key)),
    )  # fmt: skip
    work = functools.partial(_run_to_json, state, run)

    async def guarded() -> Response:
        content = await state.run_guarded(request, work, run.cancelled)
        return Response(content=content, media_type="application/json")

    return await _answered(guarded)


def _run_to_json(state: ServerState, run: WorkflowRun) -> bytes:
    response = run_workflow(state.service, run, WorkflowLimits.of(state.settings), state.executor)
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)


def _add_run_route(path: str, summary: str, deprecated: bool = False) -> None:
    async def run_specification(body: WorkflowSpecificationRequest, request: Request) -> Response:
        return await _run(request, body, body.specification)

    router.add_api_route(
        path, run_specification, methods=["POST"], summary=summary, responses=RESPONSES, deprecated=deprecated,
        name=f"workflows_run{'_legacy' if deprecated else ''}", route_class_override=OffLoopBodyRoute,
    )  # fmt: skip


def _add_saved_route(path: str, summary: str, deprecated: bool = False) -> None:
    async def run_saved(
        body: PredefinedWorkflowRequest, request: Request, workspace_name: str, workflow_id: str
    ) -> Response:
        """`workspace_name` is the vendor's notion: saved definitions are keyed by id alone."""
        state: ServerState = request.app.state.visionserve
        saved = await state.in_worker(SavedWorkflows(state.settings.home).get, workflow_id)
        return await _run(request, body, saved.definition)

    router.add_api_route(
        path, run_saved, methods=["POST"], summary=summary, responses=RESPONSES, deprecated=deprecated,
        name=f"workflows_run_saved{'_legacy' if deprecated else ''}", route_class_override=OffLoopBodyRoute,
    )  # fmt: skip


_add_run_route("/workflows/run", "Run a workflow given inline (`specification`)")
_add_run_route("/infer/workflows", "Run a workflow given inline (legacy spelling)", deprecated=True)
_add_saved_route("/{workspace_name}/workflows/{workflow_id}", "Run a workflow saved on this server")
_add_saved_route(
    "/infer/workflows/{workspace_name}/{workflow_id}", "Run a saved workflow (legacy spelling)", deprecated=True
)


async def _validate(body: DefinitionBody, request: Request) -> Response:
    state: ServerState = request.app.state.visionserve
    limits = WorkflowLimits.of(state.settings)

    async def compiled() -> Response:
        await state.in_worker(compile_plan, body.root, limits)
        return JSONResponse({"status": "ok"})

    return await _answered(compiled)


router.add_api_route(
    "/workflows/validate", _validate, methods=["POST"], responses=RESPONSES, route_class_override=OffLoopBodyRoute,
    summary="Compile a workflow definition without running it: {status: ok}, or the first problem",
)  # fmt: skip


class _InterfaceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    api_key: str | None = None
    specification: dict[str, Any]


async def _describe_interface(body: _InterfaceRequest, request: Request) -> Response:
    state: ServerState = request.app.state.visionserve
    limits = WorkflowLimits.of(state.settings)

    async def described() -> Response:
        plan = await state.in_worker(compile_plan, body.specification, limits)
        return JSONResponse(describe_interface(plan))

    return await _answered(described)


router.add_api_route(
    "/workflows/describe_interface", _describe_interface, methods=["POST"], responses=RESPONSES,
    route_class_override=OffLoopBodyRoute, summary="A definition's inputs and outputs, with their kinds",
)  # fmt: skip


async def _describe_saved_interface(request: Request, workspace_name: str, workflow_id: str) -> Response:
    """`workspace_name` is the vendor's notion: saved definitions are keyed by id alone."""
    state: ServerState = request.app.state.visionserve
    limits = WorkflowLimits.of(state.settings)

    async def described() -> Response:
        saved = await state.in_worker(SavedWorkflows(state.settings.home).get, workflow_id)
        return JSONResponse(describe_interface(await state.in_worker(compile_plan, saved.definition, limits)))

    return await _answered(described)


router.add_api_route(
    "/{workspace_name}/workflows/{workflow_id}/describe_interface", _describe_saved_interface, methods=["POST"],
    responses=RESPONSES, summary="A saved definition's inputs and outputs, with their kinds",
)  # fmt: skip


async def _dynamic_outputs(body: DefinitionBody) -> Response:
    async def listed() -> Response:
        return JSONResponse(step_outputs(body.root))

    return await _answered(listed)


router.add_api_route(
    "/workflows/blocks/dynamic_outputs", _dynamic_outputs, methods=["POST"], responses=RESPONSES,
    summary="The outputs (name, kinds) a step with this manifest would have",
)  # fmt: skip


async def describe_blocks() -> JSONResponse:
    return JSONResponse(blocks_description())


# One route for both methods, so a 405 lists both in `Allow` (the schema gives each method its own operation id).
router.add_api_route(
    "/workflows/blocks/describe", describe_blocks, methods=["GET", "POST"], operation_id="describe_blocks",
    summary="The blocks this server has: manifests' schemas, outputs, kinds",
)  # fmt: skip


@router.get("/workflows/definition/schema", summary="JSON schema of a workflow definition (all block manifests)")
async def describe_definition() -> JSONResponse:
    return JSONResponse(definition_schema())


@router.get("/workflows/execution_engine/versions", summary="Definition versions this engine runs")
async def engine_versions() -> JSONResponse:
    return JSONResponse({"versions": EXECUTION_ENGINE_VERSIONS})
