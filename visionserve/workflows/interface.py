"""What a definition takes and gives (`/workflows/describe_interface`): each input's and output's kinds, and the
JSON type of each kind; and the outputs one step would have (`/workflows/blocks/dynamic_outputs`)."""

from __future__ import annotations

from typing import Any

from visionserve.workflows import kinds
from visionserve.workflows.compiler import Plan, checked_step

# The JSON value a kind arrives as in a run's answer (the reference's `typing_hints`)
TYPING_HINTS: dict[str, str] = {
    kinds.WILDCARD: "Any", kinds.IMAGE: "dict", kinds.VIDEO_METADATA: "dict", kinds.OBJECT_DETECTION: "dict",
    kinds.INSTANCE_SEGMENTATION: "dict", kinds.KEYPOINT_DETECTION: "dict", kinds.CLASSIFICATION: "dict",
    kinds.BOOLEAN: "bool", kinds.INTEGER: "int", kinds.FLOAT: "float", kinds.FLOAT_ZERO_TO_ONE: "float",
    kinds.STRING: "str", kinds.DICTIONARY: "dict", kinds.LIST_OF_VALUES: "list", kinds.INFERENCE_ID: "str",
    kinds.ROBOFLOW_MODEL_ID: "str", kinds.ROBOFLOW_PROJECT: "str", kinds.PARENT_ID: "str",
    kinds.IMAGE_METADATA: "dict", kinds.POINT: "list", kinds.ZONE: "list",
}  # fmt: skip


def _output_kinds(plan: Plan, selector: Any) -> list[str]:
    if selector.source == "inputs":
        return list(plan.inputs[selector.name].kind)
    step = plan.steps[selector.name]
    outputs = step.block.outputs_for(step.manifest)
    chosen = outputs if selector.output == "*" else [o for o in outputs if o.name == selector.output]
    return list(dict.fromkeys(kind for output in chosen for kind in output.kinds))


def describe_interface(plan: Plan) -> dict[str, Any]:
    inputs = {name: list(declared.kind) for name, declared in plan.inputs.items()}
    outputs = {output.name: _output_kinds(plan, output.selector) for output in plan.outputs}
    used = {kind for values in (*inputs.values(), *outputs.values()) for kind in values}
    return {"inputs": inputs, "outputs": outputs,
            "typing_hints": {kind: TYPING_HINTS.get(kind, "Any") for kind in sorted(used)},
            "kinds_schemas": {}}  # fmt: skip


def step_outputs(raw_step: dict[str, Any]) -> list[dict[str, Any]]:
    """The outputs (name, kinds) a step of this manifest has: for blocks whose outputs the manifest names."""
    block, manifest = checked_step(raw_step)
    return [{"name": output.name, "kind": list(output.kinds)} for output in block.outputs_for(manifest)]
