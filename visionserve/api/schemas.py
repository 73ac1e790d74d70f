"""Request and response bodies of the `/infer/*` routes, field for field as the reference server's.

Unknown fields are ignored, as the reference does, so newer clients keep working.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from visionserve.core import InferenceJob
from visionserve.images.sources import ImageSpec
from visionserve.models.aliases import resolve_alias
from visionserve.models.ids import validate_model_id
from visionserve.models.manifest import Task

Confidence = float | Literal["best", "default"]

_NOT_OPTIONS = frozenset({"id", "model_id", "image", "api_key"})


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = Field(description="How `value` carries the image: `base64`, `url` or `numpy` (case-insensitive).")
    value: Any = Field(
        None,
        description="Base64 text of an image file (a `data:image/...;base64,` prefix is allowed), an http(s) URL, "
        "or for `numpy` the base64 of a pickled uint8 array or of .npy bytes (off unless "
        "VISIONSERVE_ALLOW_NUMPY_INPUT=1).",
    )

    @field_validator("type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    def spec(self) -> ImageSpec:
        return ImageSpec(type=self.type, value=self.value)


class InferenceRequest(BaseModel):
    """Fields every task accepts."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), description="Echoed as `inference_id`.")
    model_id: str | None = Field(description="`project/version` of a model in the store, or a built-in id.")
    image: ImageInput | list[ImageInput] = Field(description="One image, or a list answered by a list.")
    api_key: str | None = None
    model_type: str | None = None
    usage_billable: bool = True
    start: float | None = None
    source: str | None = None
    source_info: str | None = None
    disable_model_monitoring: bool = False
    disable_preproc_auto_orient: bool = Field(False, description="Ignore the EXIF orientation tag.")
    disable_preproc_contrast: bool = False
    disable_preproc_grayscale: bool = False
    disable_preproc_static_crop: bool = False

    def to_job(self, task: Task, api_key: str | None) -> InferenceJob:
        images = self.image if isinstance(self.image, list) else [self.image]
        return InferenceJob(
            model_id=validate_model_id(resolve_alias(self.model_id) if self.model_id else self.model_id),
            images=[image.spec() for image in images],
            request_id=self.id,
            as_list=isinstance(self.image, list),
            options=self.model_dump(exclude=_NOT_OPTIONS),
            auto_orient=not self.disable_preproc_auto_orient,
            expected_task=task,
            api_key=api_key,
        )


class ObjectDetectionRequest(InferenceRequest):
    confidence: Confidence = Field(0.4, description="Minimum score; `best`/`default` use the model's default.")
    iou_threshold: float | None = Field(0.3, description="IoU above which NMS drops the weaker box.")
    class_agnostic_nms: bool | None = False
    class_filter: list[str] | None = Field(None, description="Keep only these class names.")
    max_detections: int | None = Field(300, ge=0)
    max_candidates: int | None = Field(3000, ge=1, description="Best boxes considered before NMS.")
    fix_batch_size: bool | None = False
    visualize_predictions: bool | None = False
    visualization_labels: bool | None = False
    visualization_stroke_width: int | None = 1
    disable_active_learning: bool | None = False
    active_learning_target_dataset: str | None = None


class ImageSize(BaseModel):
    width: int
    height: int


class ObjectDetectionPrediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    x: float = Field(description="Box centre, original-image pixels.")
    y: float
    width: float
    height: float
    confidence: float
    class_name: str = Field(alias="class")
    class_id: int
    detection_id: str


class InferenceResponse(BaseModel):
    visualization: str | None = Field(None, description="Base64 JPEG, only when asked for.")
    inference_id: str
    time: float = Field(description="Seconds spent decoding, running and post-processing.")
    image: ImageSize


class ObjectDetectionResponse(InferenceResponse):
    predictions: list[ObjectDetectionPrediction]


class ErrorResponse(BaseModel):
    message: str
