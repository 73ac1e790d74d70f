"""Classification model steps, single- and multi-label: the core's classification answer, per image (or crop).

The answer is the one `/infer/classification` gives, plus `parent_id` (the image's id, e.g. the crop's), as the
reference adds it.
"""

from __future__ import annotations

from typing import Any, Literal

from visionserve.models.manifest import Task
from visionserve.workflows import kinds
from visionserve.workflows.blocks.base import BlockSpec, Output, StepInputs, StepOutputs, selector
from visionserve.workflows.blocks.model_common import Confidence, ModelManifest, model_run


class _ClassificationManifest(ModelManifest):
    confidence: Confidence | selector(kinds.FLOAT_ZERO_TO_ONE, kinds.FLOAT) = 0.4  # type: ignore[valid-type]


class ClassificationV2(_ClassificationManifest):
    type: Literal["roboflow_core/roboflow_classification_model@v2"]


class ClassificationV1(_ClassificationManifest):
    type: Literal["roboflow_core/roboflow_classification_model@v1", "RoboflowClassificationModel",
                  "ClassificationModel"]  # fmt: skip


class MultiLabelClassificationV2(_ClassificationManifest):
    type: Literal["roboflow_core/roboflow_multi_label_classification_model@v2"]


class MultiLabelClassificationV1(_ClassificationManifest):
    type: Literal["roboflow_core/roboflow_multi_label_classification_model@v1",
                  "RoboflowMultiLabelClassificationModel", "MultiLabelClassificationModel"]  # fmt: skip


def _shape(answer: dict[str, Any], inputs: StepInputs) -> StepOutputs:
    image = inputs["images"]
    prediction = {**answer, "parent_id": image.image_id}
    if not image.is_root:
        prediction.update(root_parent_id=image.root.image_id)
    return {"inference_id": answer.get("inference_id"), "predictions": prediction, "model_id": inputs["model_id"]}


_V2_OUTPUTS = (
    Output("inference_id", (kinds.INFERENCE_ID,)),
    Output("predictions", (kinds.CLASSIFICATION,)),
    Output("model_id", (kinds.ROBOFLOW_MODEL_ID,)),
)
_run = model_run(Task.CLASSIFICATION, _shape)

BLOCKS = (
    BlockSpec(ClassificationV2, _V2_OUTPUTS, _run, human_name="Single-Label Classification Model"),
    BlockSpec(ClassificationV1, _V2_OUTPUTS[:2], _run, human_name="Single-Label Classification Model"),
    BlockSpec(MultiLabelClassificationV2, _V2_OUTPUTS, _run, human_name="Multi-Label Classification Model"),
    BlockSpec(MultiLabelClassificationV1, _V2_OUTPUTS[:2], _run, human_name="Multi-Label Classification Model"),
)
