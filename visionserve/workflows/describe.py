"""What `/workflows/blocks/describe` and `/workflows/definition/schema` answer: every registered block's manifest
JSON schema (the single source of its schema), its outputs with their kinds, and the definition's own schema."""

from __future__ import annotations

import functools
from typing import Any, Union

from pydantic import Field, create_model

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import BlockSpec, selector_kinds
from visionserve.workflows.blocks.registry import BLOCKS
from visionserve.workflows.definition import Definition
from visionserve.workflows.operations.language import language_description

EXECUTION_ENGINE_VERSIONS = ["1.0.0"]  # the definition format this engine runs (1.x definitions)


def _block(block: BlockSpec) -> dict[str, Any]:
    type_ids = block.manifest.type_ids()
    return {
        "manifest_type_identifier": type_ids[0],
        "manifest_type_identifier_aliases": list(type_ids[1:]),
        "human_friendly_block_name": block.human_name or type_ids[0],
        "block_schema": block.manifest.model_json_schema(),
        "outputs_manifest": [
            {"name": output.name, "kind": kinds.describe_kinds(output.kinds)} for output in block.outputs
        ],
        "output_dimensionality_offset": max(block.dimensionality_offset, 0) if not block.nested_inputs else -1,
        "input_dimensionality_offsets": {name: 1 for name in block.nested_inputs},
        "is_flow_control": block.flow_control,
        "block_source": "visionserve",
        "fully_qualified_block_class_name": f"{block.manifest.__module__}.{block.manifest.__qualname__}",
        "execution_engine_compatibility": ">=1.0.0,<2.0.0",
    }


def _connections() -> dict[str, list[dict[str, str]]]:
    """For each kind, the block properties that accept it."""
    connections: dict[str, list[dict[str, str]]] = {}
    for block in BLOCKS:
        for name, spec in selector_kinds(block.manifest).items():
            for kind in spec.kinds:
                connections.setdefault(kind, []).append(
                    {"manifest_type_identifier": block.type_id, "property_name": name}
                )
    return connections


@functools.cache
def blocks_description() -> dict[str, Any]:
    return {
        "blocks": [_block(block) for block in BLOCKS],
        "declared_kinds": kinds.describe_kinds(kinds.KIND_DESCRIPTIONS),
        "kinds_connections": _connections(),
        "primitives_connections": [],
        "universal_query_language_description": language_description(),
        "dynamic_block_definition_schema": {},
    }


@functools.cache
def definition_schema() -> dict[str, Any]:
    """The definition's JSON schema, with each step one of the blocks' manifests."""
    step = Union[tuple(block.manifest for block in BLOCKS)]  # type: ignore[valid-type]
    model = create_model(
        "WorkflowDefinition", __base__=Definition, steps=(list[step], Field(description="The steps, any order."))
    )
    return {"schema": model.model_json_schema()}
