"""Request and response bodies of the `/infer/*` routes, field for field as the reference server's.

Unknown fields are ignored, as the reference does, so newer clients keep working.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from visionserve.core import OPTION_LIMITS, InferenceJob
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
    class_filter: list[str] | None = Field(None, max_length=10_000, description="Keep only these class names.")
    max_detections: int | None = Field(300, ge=0, le=OPTION_LIMITS["max_detections"])
    max_candidates: int | None = Field(
        3000, ge=1, le=OPTION_LIMITS["max_candidates"], description="Best boxes considered before NMS."
    )
    fix_batch_size: bool | None = False
    visualize_predictions: bool | None = False
    visualization_labels: bool | None = False
    visualization_stroke_width: int | None = 1
    disable_active_learning: bool | None = False
    active_learning_target_dataset: str | None = None


class InstanceSegmentationRequest(ObjectDetectionRequest):
    mask_decode_mode: str = Field(
        "accurate", description="accurate (input resolution), fast (prototype resolution) or tradeoff."
    )
    tradeoff_factor: float = Field(0.0, description="For tradeoff: 0 = fast, 1 = accurate.")
    response_mask_format: Literal["polygon", "rle"] = Field(
        "polygon", description="`points` polygons, or COCO RLE masks at the original resolution."
    )
    enforce_dense_masks_in_inference_models: bool = False


class KeypointsDetectionRequest(ObjectDetectionRequest):
    keypoint_confidence: float | None = Field(0.0, description="Drop keypoints scoring below this.")

    @field_validator("confidence")
    @classmethod
    def _no_best(cls, value: Confidence) -> Confidence:
        if value == "best":
            raise ValueError('confidence="best" is not supported for keypoint detection; use a number or "default"')
        return value


class OrientedDetectionRequest(ObjectDetectionRequest):
    """Oriented boxes take the detection options."""


class ClassificationRequest(InferenceRequest):
    confidence: Confidence = Field(0.4, description="Minimum score to list a class; `best`/`default` mean 0.5.")
    visualize_predictions: bool | None = False
    visualization_stroke_width: int | None = 1
    disable_active_learning: bool | None = False
    active_learning_target_dataset: str | None = None


class SemanticSegmentationRequest(InferenceRequest):
    confidence: Confidence = Field(
        0.4, description="Pixels whose class probability is below this get the background class (`background` if "
        "the model names one, else 255) and confidence 0; `best`/`default` mean 0.5."
    )
    visualize_predictions: bool | None = Field(False, description="Add a JPEG with the class map blended in.")
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


class Point(BaseModel):
    x: float
    y: float


class Rle(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed run-length string, column-major.")


class InstanceSegmentationPrediction(ObjectDetectionPrediction):
    points: list[Point] | None = Field(None, description="Outer polygon, original-image pixels (polygon format).")
    rle: Rle | None = Field(None, description="The mask (rle format).")
    mask_format: Literal["polygon", "rle"]


class Keypoint(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    x: float
    y: float
    confidence: float
    class_id: int = Field(description="Index of the keypoint in the skeleton.")
    class_name: str = Field(alias="class", description="Name of the keypoint.")


class KeypointsPrediction(ObjectDetectionPrediction):
    keypoints: list[Keypoint]


class OrientedPrediction(ObjectDetectionPrediction):
    width: float = Field(description="Length of the box along `angle`.")
    height: float = Field(description="Length of the box across `angle`.")
    angle: float = Field(description="Rotation of the box's width side, radians, clockwise in image coordinates.")
    points: list[Point] = Field(description="The four corners, original-image pixels.")


class ClassificationPrediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_name: str = Field(alias="class")
    class_id: int
    confidence: float


class MultiLabelScore(BaseModel):
    confidence: float
    class_id: int


class SemanticSegmentationPrediction(BaseModel):
    segmentation_mask: str = Field(description="Base64 PNG (8-bit grey) of the class id of every original pixel.")
    class_map: dict[str, str] = Field(description="Class id (as text) → class name.")
    confidence_mask: str = Field(description="Base64 PNG (8-bit grey): each pixel's class probability x 255.")
    present_class_ids: list[int] = Field(description="Class ids in the mask, ascending.")


class InferenceResponse(BaseModel):
    visualization: str | None = Field(None, description="Base64 JPEG, only when asked for.")
    inference_id: str
    time: float = Field(description="Seconds spent decoding, running and post-processing.")
    image: ImageSize


class ObjectDetectionResponse(InferenceResponse):
    predictions: list[ObjectDetectionPrediction]




class InstanceSegmentationResponse(InferenceResponse):
    predictions: list[InstanceSegmentationPrediction]


class KeypointsDetectionResponse(InferenceResponse):
    predictions: list[KeypointsPrediction]


class OrientedDetectionResponse(InferenceResponse):
    predictions: list[OrientedPrediction]


class SemanticSegmentationResponse(InferenceResponse):
    predictions: SemanticSegmentationPrediction


class ClassificationResponse(InferenceResponse):
    predictions: list[ClassificationPrediction] = Field(description="Classes at or above the threshold, best first.")
    top: str = Field(description='Best class, or "" when none passes the threshold.')
    confidence: float


class MultiLabelClassificationResponse(InferenceResponse):
    predictions: dict[str, MultiLabelScore] = Field(description="Every class, keyed by name.")
    predicted_classes: list[str] = Field(description="Classes above the threshold.")


class ErrorResponse(BaseModel):
    message: str
