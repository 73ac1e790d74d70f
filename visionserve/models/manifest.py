"""What the server needs to know about a model beyond its weights, stored as `manifest.json`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.onnx"


NamedEnum = TypeVar("NamedEnum", bound=Enum)


def parse_named(kind: type[NamedEnum], aliases: Mapping[str, NamedEnum], key: str, name: str, what: str) -> NamedEnum:
    """An enum member by alias or value, or a ValueError that lists every accepted spelling."""
    if key in aliases:
        return aliases[key]
    try:
        return kind(key)
    except ValueError:
        known = ", ".join(sorted({*aliases, *(member.value for member in kind)}))
        raise ValueError(f"unknown {what} {name!r}; expected one of: {known}") from None


class Task(str, Enum):
    """Task types, spelled as the reference server's `/model/registry` reports them."""

    OBJECT_DETECTION = "object-detection"
    INSTANCE_SEGMENTATION = "instance-segmentation"
    CLASSIFICATION = "classification"
    KEYPOINT_DETECTION = "keypoint-detection"
    ORIENTED_OBJECT_DETECTION = "oriented-object-detection"
    SEMANTIC_SEGMENTATION = "semantic-segmentation"

    @classmethod
    def parse(cls, name: str) -> Task:
        """Accept our names, the reference's and Ultralytics' (`detect`, `segment`, ...)."""
        return parse_named(cls, _TASK_ALIASES, name.strip().lower(), name, "task")


_TASK_ALIASES = {
    "detect": Task.OBJECT_DETECTION,
    "segment": Task.INSTANCE_SEGMENTATION,
    "classify": Task.CLASSIFICATION,
    "pose": Task.KEYPOINT_DETECTION,
    "obb": Task.ORIENTED_OBJECT_DETECTION,
    "semantic": Task.SEMANTIC_SEGMENTATION,
}


class ModelFamily(str, Enum):
    """Which architecture's pre- and post-processing a model needs; its outputs alone cannot always tell."""

    YOLO = "yolo"  # Ultralytics YOLO (v3u to 26) and classic YOLOv5: letterbox, RGB 0..1, NMS; also the family of
    # files that follow the manifest's own pre-processing (torchvision classifiers and segmenters, DeepLabV3+)
    RFDETR = "rfdetr"  # Roboflow RF-DETR: ImageNet-normalised stretch, sigmoid logits, top-k, no NMS
    RTDETR = "rtdetr"  # Ultralytics RT-DETR: stretch, RGB 0..1, sigmoid scores per query, no NMS
    YOLOX = "yolox"  # Megvii YOLOX: top-left letterbox, BGR 0..255, grid decode, objectness x class, NMS
    YOLO_NAS = "yolo-nas"  # Deci YOLO-NAS (super-gradients): letterbox, RGB 0..1, xyxy boxes + class scores, NMS

    @classmethod
    def parse(cls, name: str) -> ModelFamily:
        return parse_named(cls, _FAMILY_ALIASES, name.strip().lower().replace("-", ""), name, "model family")


_FAMILY_ALIASES = {
    "ultralytics": ModelFamily.YOLO,
    "yolov5": ModelFamily.YOLO,
    "yolov8": ModelFamily.YOLO,
    "rfdetr": ModelFamily.RFDETR,
    "rtdetr": ModelFamily.RTDETR,
    "yolonas": ModelFamily.YOLO_NAS,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_CROP_FRACTION = 0.875  # Resize(256) then CenterCrop(224)
TORCHVISION_SEGMENTATION_SIDE = 520  # torchvision's segmentation weights resize the short side to 520


class Normalization(BaseModel):
    """Per-channel (R, G, B) mean and standard deviation, in units of the 0..1 input."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @model_validator(mode="after")
    def _positive_std(self) -> Normalization:
        if min(self.std) <= 0:
            raise ValueError("every std must be positive")
        return self

    @classmethod
    def imagenet(cls) -> Normalization:
        return cls(mean=IMAGENET_MEAN, std=IMAGENET_STD)


class ResizeMode(str, Enum):
    LETTERBOX = "letterbox"  # fit inside, pad the rest (detection-style models)
    STRETCH = "stretch"  # fill, ignoring the aspect ratio
    CENTER_CROP = "center-crop"  # fill the short side, crop the long one (Ultralytics classifiers)
    SHORT_SIDE = "short-side"  # short side to the input size, aspect kept, any shape (torchvision's segmentation
    # preset); needs an ONNX input of dynamic height and width, and takes one image per forward pass


class Contrast(str, Enum):
    """Roboflow's contrast pre-processing steps, named as in `environment.json`."""

    STRETCHING = "Contrast Stretching"
    HISTOGRAM = "Histogram Equalization"
    ADAPTIVE = "Adaptive Equalization"


class StaticCrop(BaseModel):
    """The region of every image the model looks at, in percent of its width and height."""

    x_min: int = Field(ge=0, le=100)
    y_min: int = Field(ge=0, le=100)
    x_max: int = Field(ge=0, le=100)
    y_max: int = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _non_empty(self) -> StaticCrop:
        if self.x_min >= self.x_max or self.y_min >= self.y_max:
            raise ValueError("static crop must have x_min < x_max and y_min < y_max")
        return self


class Preprocessing(BaseModel):
    """Steps applied before resizing, as the model was trained (Roboflow packages); requests may turn them off."""

    static_crop: StaticCrop | None = None
    contrast: Contrast | None = None
    grayscale: bool = False


class ModelManifest(BaseModel):
    """One model in the store. Unknown keys are ignored so newer stores stay readable."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    format_version: int = 1
    model_id: str
    task: Task
    class_names: list[str] = Field(min_length=1)
    input_size: tuple[int, int] | None = Field(
        None, description="Network input (height, width); None means the ONNX input shape decides."
    )
    stride: int = Field(32, ge=1)
    family: ModelFamily = ModelFamily.YOLO
    resize: ResizeMode = ResizeMode.LETTERBOX
    pad_value: int = Field(114, ge=0, le=255)
    normalization: Normalization | None = Field(
        None, description="Mean/std applied after scaling to 0..1 (ImageNet-style classifiers, RF-DETR)."
    )
    crop_fraction: float = Field(
        1.0, gt=0, le=1, description="Center-crop: the crop's share of the resized short side (torchvision: 0.875)."
    )
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    multilabel: bool = Field(False, description="Classification: independent scores per class.")
    keypoint_shape: tuple[int, int] | None = Field(
        None, description="Pose: keypoints per object and values per keypoint (2: x, y; 3: x, y, visibility)."
    )
    keypoint_names: dict[int, list[str]] = Field(
        default_factory=dict, description="Pose: keypoint names for each class id."
    )
    keypoint_counts: list[int] | None = Field(
        None, description="RF-DETR pose: keypoints of each class slot (rfdetr's num_keypoints_per_class)."
    )
    colors: dict[str, str] = Field(default_factory=dict, description="Class name → hex colour for drawings.")
    model_type: str | None = Field(None, description="Architecture, e.g. yolov8n, when known.")
    weights_file: str = WEIGHTS_FILE
    weights_sha256: str | None = None
    source: str | None = Field(None, description="Where the weights came from, for humans.")
    export: str | None = Field(
        None, description="A checkpoint's model: the store's `.exports` entry its weights were copied from."
    )
    added_at: datetime | None = None


@dataclass(frozen=True)
class ModelPackage:
    """A manifest plus the weights file it describes: everything needed to load a model."""

    manifest: ModelManifest
    weights_path: Path
    builtin: bool = False
