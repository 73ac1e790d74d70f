"""Writes visionserve/assets/probe.onnx: the tiny model a provider is tried on at start-up
(visionserve/runtime/providers.py). A 3x3 convolution and a ReLU on a 1x3x16x16 input, so a GPU provider has to
load its convolution library (cuDNN), as every vision model will, and run one kernel.

    python tools/make_probe_model.py [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "visionserve" / "assets" / "probe.onnx"


def probe_model() -> onnx.ModelProto:
    weights = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "weights"], ["features"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["features"], ["output"]),
        ],
        "provider_probe",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 16, 16])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    # opset 17 and IR 8: every onnxruntime build from 1.15 on (the OpenVINO and GPU wheels lag the CPU one) reads it
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    onnx.save(probe_model(), out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
