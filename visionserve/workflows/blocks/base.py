"""THE BLOCK INTERFACE: what a workflow block is, for the compiler, the engine and `/workflows/blocks/describe`.

A block is a module under `visionserve/workflows/blocks/` that defines

* a manifest: a pydantic model subclassing `BlockManifest`, with
    - `type: Literal["roboflow_core/<name>@v1", "<Alias>", ...]` (the first is the type id, the rest aliases);
    - its properties, with the reference's names and defaults. A property that may hold a selector is typed
      with `selector(kind, ...)` (e.g. `float | selector(FLOAT)`), or `step_selector()` for flow control
      (`$steps.x`); lists and dicts of selectors are typed `list[selector(...)]` / `dict[str, selector(...)]`.
    The manifest's JSON schema is the block's `describe` entry: the single source of its schema.
* `BLOCK = BlockSpec(manifest=..., outputs=(Output("name", (KIND, ...)), ...), run=run, ...)`, and
* registration: one line in `blocks/registry.py` (`BLOCKS`).

`run(step, batch, context)` gets the validated manifest, and `batch`: one dict per element of the flattened
batch the step runs on, mapping every property name to its value for that element (literals as written,
selectors resolved: images are `values.WorkflowImage`, detections `values.Detections`). Elements whose batch inputs
were skipped (conditional execution, no value) never reach the block. It returns one output dict per element
(keys: the output names), in order; a block with `dimensionality_offset=+1` (crops, slices) returns, per element,
a list of output dicts, one per child it made. Blocks that work element by element wrap a function with
`per_element`. Model blocks call `context.infer` once for the whole batch (one core job, batched forward passes).

`dimensionality_offset=-1` (stitching): the properties named in `nested_inputs` are one level deeper than the
step; each element gets, for them, the list of values of its children. Flow-control blocks (`flow_control=True`)
return per element `{"next_steps": [step names to run]}`; the engine skips the other steps they gate.

Runtime problems with the values a block was given: raise `StepInputError(message)`; the engine adds the step.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field

from visionserve.models.manifest import Task
from visionserve.workflows.errors import StepInputError
from visionserve.workflows.values import WorkflowImage

__all__ = [
    "BlockManifest", "BlockSpec", "Output", "StepContext", "StepInputError", "per_element", "selector",
    "step_selector", "selector_kinds",
]  # fmt: skip

SELECTOR_PATTERN = r"^\$(inputs|steps)\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_*-]+)?$"
STEP_PATTERN = r"^\$steps\.[A-Za-z0-9_-]+$"


@dataclass(frozen=True)
class SelectorSpec:
    """Annotation metadata: the property (or its items) may be a selector of these kinds."""

    kinds: tuple[str, ...]
    steps_only: bool = False  # flow control: `$steps.<name>`, a step rather than a value


def selector(*kinds: str) -> Any:
    """A property type: a `$inputs.x` / `$steps.s.out` selector whose value has one of `kinds`."""
    return Annotated[
        str,
        Field(pattern=SELECTOR_PATTERN, json_schema_extra={"reference": True, "kind": list(kinds)}),
        SelectorSpec(tuple(kinds)),
    ]


def step_selector() -> Any:
    """A property type for flow control: `$steps.<name>`, the step it gates."""
    return Annotated[
        str,
        Field(pattern=STEP_PATTERN, json_schema_extra={"reference": True, "selected_element": "step"}),
        SelectorSpec((), steps_only=True),
    ]


class BlockManifest(BaseModel):
    """Base of every manifest. Unknown properties are ignored, as the reference does (newer definitions run)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, protected_namespaces=())

    type: str
    name: str = Field(description="The step's unique name, used in selectors ($steps.<name>.<output>).")

    @classmethod
    def type_ids(cls) -> tuple[str, ...]:
        """The type id first, then its aliases: the `Literal` of the `type` field."""
        return tuple(typing.get_args(cls.model_fields["type"].annotation))


def _specs(annotation: Any, metadata: Sequence[Any] = ()) -> list[SelectorSpec]:
    found = [item for item in metadata if isinstance(item, SelectorSpec)]
    if typing.get_origin(annotation) is Annotated:
        _, *extra = typing.get_args(annotation)
        found += [item for item in extra if isinstance(item, SelectorSpec)]
    for argument in typing.get_args(annotation):
        found += _specs(argument)
    return found


def selector_kinds(manifest: type[BlockManifest]) -> dict[str, SelectorSpec]:
    """Each property that may hold selectors, with the kinds it accepts (merged over the union's members)."""
    result: dict[str, SelectorSpec] = {}
    for name, info in manifest.model_fields.items():
        specs = _specs(info.annotation, info.metadata)
        if specs:
            kinds = tuple(dict.fromkeys(kind for spec in specs for kind in spec.kinds))
            result[name] = SelectorSpec(kinds, steps_only=all(spec.steps_only for spec in specs))
    return result


@dataclass(frozen=True)
class Output:
    name: str
    kinds: tuple[str, ...]


# infer(model_id, images, options, expected_task) -> one core answer dict per image, from ONE core job
Infer = Callable[[str, Sequence[WorkflowImage], Mapping[str, Any], Union[Task, None]], list[dict[str, Any]]]


@dataclass(frozen=True)
class StepContext:
    """What a running step may use beyond its inputs."""

    step_name: str
    infer: Infer
    max_crops_per_image: int
    workflow_key: str = ""  # the same for every run of one definition: blocks that keep state across runs
    url_allow_hosts: frozenset[str] = frozenset()  # hosts exempt from the public-address rule for outgoing calls


StepInputs = dict[str, Any]
StepOutputs = dict[str, Any]
Run = Callable[[Any, list[StepInputs], StepContext], list[Any]]


@dataclass(frozen=True)
class BlockSpec:
    manifest: type[BlockManifest]
    outputs: tuple[Output, ...]
    run: Run
    dimensionality_offset: int = 0  # +1: each element makes a list of children; -1: see nested_inputs
    nested_inputs: frozenset[str] = frozenset()  # -1 blocks: properties one level deeper than the step
    flow_control: bool = False
    human_name: str = ""
    extra_describe: Mapping[str, Any] = field(default_factory=dict)
    outputs_of: Callable[[Any], tuple[Output, ...]] | None = None  # outputs named by the manifest (aggregator)

    @property
    def type_id(self) -> str:
        return self.manifest.type_ids()[0]

    def outputs_for(self, manifest: Any) -> tuple[Output, ...]:
        """The outputs of a step of this block: the declared ones, or those its manifest names."""
        return self.outputs if self.outputs_of is None else self.outputs_of(manifest)

    def output(self, name: str, manifest: Any = None) -> Output | None:
        outputs = self.outputs if manifest is None else self.outputs_for(manifest)
        return next((output for output in outputs if output.name == name), None)


def per_element(function: Callable[[Any, StepInputs, StepContext], Any]) -> Run:
    """A batch `run` from a function of one element (most blocks that are not models)."""

    def run(step: Any, batch: list[StepInputs], context: StepContext) -> list[Any]:
        return [function(step, inputs, context) for inputs in batch]

    return run
