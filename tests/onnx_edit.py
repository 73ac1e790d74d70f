"""Small ONNX files for tests: fixture models with other metadata, and stand-ins with given output names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def with_metadata(source: Path, destination: Path, metadata: dict[str, str]) -> Path:
    """A copy of `source` whose metadata_props are exactly `metadata` (empty: none at all)."""
    model = onnx.load(str(source))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(destination))
    return destination


def constant_outputs(
    destination: Path,
    input_name: str,
    input_shape: list[int],
    outputs: dict[str, list[int] | np.ndarray],
    metadata: dict[str, str] | None = None,
) -> Path:
    """A model that ignores its image input and answers constant tensors (given, or random of the given shapes):
    enough to test how a file is recognised and refused, or how one exact output is decoded."""
    rng = np.random.default_rng(0)
    values = {
        name: value.astype(np.float32) if isinstance(value, np.ndarray) else rng.random(value, dtype=np.float32)
        for name, value in outputs.items()
    }
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value)) for name, value in values.items()]
    graph = helper.make_graph(
        nodes,
        "constant-outputs",
        [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(value.shape)) for name, value in values.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, text in (metadata or {}).items():
        model.metadata_props.add(key=key, value=text)
    onnx.save(model, str(destination))
    return destination
