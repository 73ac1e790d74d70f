"""Definition → execution plan. Every step validated by its block's manifest, every selector resolved and its kinds
checked, cycles found, batch levels computed: each problem a 4xx naming the step and the property, found before
any model runs.

Levels: scalars (parameters) are level 0, input batches level 1; a +1 block (crops) makes level k+1 whose elements
are the children of level-k elements. A level is identified by its depth and its lineage (the +1 steps that made
it), so crops of two different crop steps never meet in one step.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import BlockManifest, BlockSpec, SelectorSpec, selector_kinds
from visionserve.workflows.blocks.registry import block_for, known_types
from visionserve.workflows.definition import BATCH_INPUTS, Definition, WorkflowInput, parse_definition
from visionserve.workflows.errors import (
    GraphStructureError, InvalidReferenceError, KindMismatchError, WorkflowSyntaxError,
)  # fmt: skip
from visionserve.workflows.limits import WorkflowLimits
from visionserve.workflows.selectors import WILDCARD_OUTPUT, Selector, is_selector, parse_selector, selectors_in


@dataclass(frozen=True)
class Level:
    depth: int  # 0: scalar, 1: the input batch, 2: children of its elements, ...
    lineage: tuple[str, ...] = ()  # the +1 steps that made each level beyond 1

    def child(self, step: str) -> Level:
        return Level(self.depth + 1, (*self.lineage, step))

    def parent(self) -> Level:
        return Level(self.depth - 1, self.lineage[:-1])

    def contains(self, other: Level) -> bool:
        """True when `other`'s elements are this level's or their descendants (a gate at this level applies)."""
        return other.depth >= self.depth and other.lineage[: len(self.lineage)] == self.lineage


SCALAR = Level(0)
BATCH = Level(1)


@dataclass(frozen=True)
class CompiledStep:
    name: str
    block: BlockSpec
    manifest: BlockManifest
    references: dict[str, Any]  # property → its value with Selector objects in place of selector strings
    level: Level  # the level of the elements it runs on
    output_level: Level
    dependencies: frozenset[str]  # steps it reads from or is gated by
    gates: tuple[str, ...]  # flow-control steps that decide whether it runs


@dataclass(frozen=True)
class CompiledOutput:
    name: str
    selector: Selector
    root_coordinates: bool
    level: Level


@dataclass(frozen=True)
class Plan:
    definition: Definition
    inputs: dict[str, WorkflowInput]
    steps: dict[str, CompiledStep]
    outputs: tuple[CompiledOutput, ...]
    order: tuple[tuple[str, ...], ...]  # waves: each step's dependencies are in earlier waves


def _input_level(declared: WorkflowInput) -> Level:
    return BATCH if isinstance(declared, BATCH_INPUTS) else SCALAR


class _Compiler:
    def __init__(self, definition: Definition) -> None:
        self.definition = definition
        self.inputs: dict[str, WorkflowInput] = {}
        for declared in definition.inputs:
            if declared.name in self.inputs:
                raise WorkflowSyntaxError(f"Two inputs are named {declared.name!r}.")
            self.inputs[declared.name] = declared
        self.raw_steps: dict[str, dict[str, Any]] = {}
        self.manifests: dict[str, tuple[BlockSpec, BlockManifest]] = {}
        self.steps: dict[str, CompiledStep] = {}
        self.gates: dict[str, list[str]] = {}

    def validate_steps(self) -> None:
        for position, raw in enumerate(self.definition.steps):
            block, manifest = checked_step(raw, position)
            if manifest.name in self.raw_steps:
                raise WorkflowSyntaxError("Two steps have this name.", manifest.name, "name")
            self.raw_steps[manifest.name] = raw
            self.manifests[manifest.name] = (block, manifest)

    def find_gates(self) -> None:
        for name, (block, manifest) in self.manifests.items():
            if not block.flow_control:
                continue
            for field, spec in selector_kinds(type(manifest)).items():
                if not spec.steps_only:
                    continue
                for text in selectors_in(getattr(manifest, field)):
                    target = parse_selector(text, name, field)
                    if target.output is not None or target.name not in self.manifests:
                        raise InvalidReferenceError(f"{text!r} names no step of this workflow.", name, field)
                    if target.name == name:
                        raise GraphStructureError("a step cannot gate itself.", name, field)
                    self.gates.setdefault(target.name, []).append(name)

    def references(self, name: str) -> tuple[dict[str, Any], set[str]]:
        """Property values with selectors parsed and checked; and the steps they read from."""
        block, manifest = self.manifests[name]
        references: dict[str, Any] = {}
        reads: set[str] = set()
        for field, spec in selector_kinds(type(manifest)).items():
            if spec.steps_only:
                continue
            value = getattr(manifest, field)
            for text in selectors_in(value):
                selector = self._checked(parse_selector(text, name, field), spec, name, field)
                if selector.source == "steps":
                    reads.add(selector.name)
            references[field] = _parsed(value)
        return references, reads

    def _checked(self, selector: Selector, spec: SelectorSpec, step: str, field: str) -> Selector:
        if selector.source == "inputs":
            declared = self.inputs.get(selector.name)
            if declared is None:
                raise InvalidReferenceError(f"{selector.text} names no input of this workflow.", step, field)
            produced = declared.kind
        else:
            if selector.name not in self.manifests:
                raise InvalidReferenceError(f"{selector.text} names no step of this workflow.", step, field)
            if selector.name == step:
                raise GraphStructureError("a step cannot read its own outputs.", step, field)
            if selector.output in (None, WILDCARD_OUTPUT):
                raise InvalidReferenceError(f"{selector.text}: name one output of the step.", step, field)
            source_block, source_manifest = self.manifests[selector.name]
            output = source_block.output(selector.output, source_manifest)
            if output is None:
                names = ", ".join(o.name for o in source_block.outputs_for(source_manifest)) or "none"
                raise InvalidReferenceError(
                    f"{selector.text}: step {selector.name!r} has no output {selector.output!r} (it has: {names}).",
                    step, field,
                )  # fmt: skip
            produced = list(output.kinds)
        if not kinds.compatible(produced, spec.kinds):
            raise KindMismatchError(
                f"{selector.text} gives {', '.join(produced)}, but this property takes {', '.join(spec.kinds)}.",
                step, field,
            )  # fmt: skip
        return selector

    def order(self) -> tuple[tuple[str, ...], ...]:
        graph: dict[str, set[str]] = {}
        self.reads: dict[str, tuple[dict[str, Any], set[str]]] = {}
        for name in self.manifests:
            references, reads = self.references(name)
            self.reads[name] = (references, reads)
            graph[name] = reads | set(self.gates.get(name, ()))
        sorter = graphlib.TopologicalSorter(graph)
        try:
            sorter.prepare()
        except graphlib.CycleError as error:
            cycle = " -> ".join(error.args[1])
            first = error.args[1][0]
            raise GraphStructureError(f"the steps form a cycle: {cycle}.", first) from None
        waves = []
        while sorter.is_active():
            ready = tuple(sorter.get_ready())
            waves.append(ready)
            sorter.done(*ready)
        return tuple(waves)

    def level_of(self, selector: Selector) -> Level:
        if selector.source == "inputs":
            return _input_level(self.inputs[selector.name])
        return self.steps[selector.name].output_level

    def compile_step(self, name: str) -> None:
        block, manifest = self.manifests[name]
        references, reads = self.reads[name]
        levels: dict[str, Level] = {}
        for field, value in references.items():
            for selector in _selectors(value):
                level = self.level_of(selector)
                if field in block.nested_inputs:
                    if level.depth < 2:
                        raise GraphStructureError(f"{selector.text} is not made of crops or slices.", name, field)
                    level = level.parent()
                if level.depth == 0:
                    continue
                for other_field, other in levels.items():
                    if other != level:
                        raise GraphStructureError(
                            f"{selector.text} is at batch level {level.depth} (from {_made_by(level)}), but "
                            f"{other_field!r} is at level {other.depth} (from {_made_by(other)}): one step takes "
                            "elements of one batch.", name, field,
                        )  # fmt: skip
                levels[field] = level
        level = next(iter(levels.values()), SCALAR)
        gates = tuple(self.gates.get(name, ()))
        for gate in gates:
            gate_level = self.steps[gate].level
            if not gate_level.contains(level):
                raise GraphStructureError(
                    f"step {gate!r} decides per element of level {gate_level.depth} ({_made_by(gate_level)}), "
                    f"which this step's elements (level {level.depth}, {_made_by(level)}) do not come from.",
                    name, "next_steps",
                )  # fmt: skip
        output_level = level.child(name) if block.dimensionality_offset > 0 else level
        self.steps[name] = CompiledStep(
            name, block, manifest, references, level, output_level, frozenset(reads | set(gates)), gates
        )

    def compile_outputs(self) -> tuple[CompiledOutput, ...]:
        outputs = []
        names: set[str] = set()
        for declared in self.definition.outputs:
            if declared.name in names:
                raise WorkflowSyntaxError(f"Two outputs are named {declared.name!r}.")
            names.add(declared.name)
            where = f"output {declared.name!r}"
            selector = parse_selector(declared.selector, where, "selector")
            if selector.source == "inputs":
                if selector.name not in self.inputs:
                    raise InvalidReferenceError(f"{selector.text} names no input.", where, "selector")
                level = _input_level(self.inputs[selector.name])
            else:
                step = self.steps.get(selector.name)
                if step is None:
                    raise InvalidReferenceError(f"{selector.text} names no step.", where, "selector")
                if selector.output is None:
                    raise InvalidReferenceError(f"{selector.text}: name an output, or * for all.", where, "selector")
                if selector.output != WILDCARD_OUTPUT and step.block.output(selector.output, step.manifest) is None:
                    raise InvalidReferenceError(
                        f"{selector.text}: step {step.name!r} has no output {selector.output!r}.", where, "selector"
                    )
                level = step.output_level
            outputs.append(CompiledOutput(declared.name, selector, declared.coordinates_system == "parent", level))
        return tuple(outputs)


def checked_step(raw: dict[str, Any], position: int = 0) -> tuple[BlockSpec, BlockManifest]:
    """One step's block and validated manifest (its selectors' syntax checked, not what they name)."""
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise WorkflowSyntaxError(f"Step number {position + 1} has no `name`.")
    type_id = raw.get("type")
    block = block_for(type_id) if isinstance(type_id, str) else None
    if block is None:
        raise WorkflowSyntaxError(
            f"unknown block type {type_id!r}. This server has: {', '.join(known_types())} (and their "
            "aliases; GET /workflows/blocks/describe lists them).", name, "type",
        )  # fmt: skip
    for field in selector_kinds(block.manifest):  # a clearer word than the pattern's
        for text in selectors_in(raw.get(field)):
            parse_selector(text, name, field)
    try:
        return block, block.manifest.model_validate(raw)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        field = str(problem["loc"][0]) if problem["loc"] else None
        raise WorkflowSyntaxError(f"{problem['msg']}.", name, field, type_id) from None


def _parsed(value: Any) -> Any:
    """The property value with its selector strings (itself, list items, dict values) as Selector objects."""
    if is_selector(value):
        return parse_selector(value)
    if isinstance(value, list):
        return [parse_selector(item) if is_selector(item) else item for item in value]
    if isinstance(value, dict):
        return {key: parse_selector(item) if is_selector(item) else item for key, item in value.items()}
    return value


def _selectors(value: Any) -> list[Selector]:
    if isinstance(value, Selector):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Selector)]
    if isinstance(value, dict):
        return [item for item in value.values() if isinstance(item, Selector)]
    return []


def _made_by(level: Level) -> str:
    return f"crops of step {level.lineage[-1]!r}" if level.lineage else "the inputs"


def compile_definition(raw: object, limits: WorkflowLimits) -> Plan:
    """The execution plan of a raw definition, or the first problem with it (a 4xx naming step and property)."""
    definition = parse_definition(raw)
    limits.check_steps(len(definition.steps))
    compiler = _Compiler(definition)
    compiler.validate_steps()
    compiler.find_gates()
    waves = compiler.order()
    for wave in waves:
        for name in wave:
            compiler.compile_step(name)
    outputs = compiler.compile_outputs()
    return Plan(definition, compiler.inputs, compiler.steps, outputs, waves)
