"""`InferenceConfiguration`: the reference client's options, defaults and wire names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# Task type → the fields the reference client sends for it (see the reference's SDK notes).
_DETECTION_LIKE = ("object-detection", "instance-segmentation", "keypoint-detection", "oriented-object-detection")


@dataclass(frozen=True)
class InferenceConfiguration:
    """Options for `infer` (and for `run_workflow`: the output image format, the profiling directory). None means
    "not sent": the server's default applies."""

    confidence_threshold: float | Literal["best", "default"] | None = None
    keypoint_confidence_threshold: float | None = None
    format: Literal["json", "image", "image_and_json"] | None = None
    mask_decode_mode: Literal["accurate", "fast", "tradeoff"] | None = None
    tradeoff_factor: float | None = None
    max_candidates: int | None = None
    max_detections: int | None = None
    iou_threshold: float | None = None
    stroke_width: int | None = None
    count_inference: bool | None = None
    service_secret: str | None = None
    disable_preproc_auto_orientation: bool | None = None
    disable_preproc_contrast: bool | None = None
    disable_preproc_grayscale: bool | None = None
    disable_preproc_static_crop: bool | None = None
    class_agnostic_nms: bool | None = None
    class_filter: list[str] | None = None
    fix_batch_size: bool | None = None
    visualize_predictions: bool = False
    visualize_labels: bool | None = None
    output_visualisation_format: Literal["base64", "numpy", "pillow"] = "base64"
    response_mask_format: Literal["polygon", "rle"] | None = None
    disable_active_learning: bool = False
    active_learning_target_dataset: str | None = None
    source: str | None = None
    source_info: str | None = None
    client_downsizing_disabled: bool = True
    default_max_input_size: int = 1024
    max_concurrent_requests: int = 1
    max_batch_size: int = 1
    profiling_directory: str = "./inference_profiling"  # where `run_workflow(enable_profiling=True)` saves traces

    def _shared_options(self) -> dict[str, Any]:
        """Fields both routes take under the same name: preprocessing switches, active learning, usage source."""
        return {
            "disable_preproc_auto_orient": self.disable_preproc_auto_orientation,
            "disable_preproc_contrast": self.disable_preproc_contrast,
            "disable_preproc_grayscale": self.disable_preproc_grayscale,
            "disable_preproc_static_crop": self.disable_preproc_static_crop,
            "disable_active_learning": self.disable_active_learning,
            "active_learning_target_dataset": self.active_learning_target_dataset,
            "source": self.source,
            "source_info": self.source_info,
        }

    def json_options(self, task_type: str) -> dict[str, Any]:
        """Body fields of `POST /infer/{task}` for a model of this task type, None values left out."""
        options: dict[str, Any] = {
            "confidence": self.confidence_threshold,
            "visualize_predictions": self.visualize_predictions,
            "visualization_stroke_width": self.stroke_width,
            **self._shared_options(),
        }
        if task_type in _DETECTION_LIKE:
            options.update(
                iou_threshold=self.iou_threshold,
                max_detections=self.max_detections,
                max_candidates=self.max_candidates,
                class_agnostic_nms=self.class_agnostic_nms,
                class_filter=self.class_filter,
                fix_batch_size=self.fix_batch_size,
                visualization_labels=self.visualize_labels,
            )
        if task_type == "keypoint-detection":
            options["keypoint_confidence"] = self.keypoint_confidence_threshold
        if task_type == "instance-segmentation":
            options.update(
                mask_decode_mode=self.mask_decode_mode,
                tradeoff_factor=self.tradeoff_factor,
                response_mask_format=self.response_mask_format,
            )
        return {name: value for name, value in options.items() if value is not None}

    def query_options(self) -> dict[str, Any]:
        """Query parameters of the legacy route, None values left out."""
        options = {
            "confidence": self.confidence_threshold,
            "keypoint_confidence": self.keypoint_confidence_threshold,
            "format": self.format,
            "labels": self.visualize_labels,
            "mask_decode_mode": self.mask_decode_mode,
            "tradeoff_factor": self.tradeoff_factor,
            "max_detections": self.max_detections,
            "overlap": self.iou_threshold,
            "stroke": self.stroke_width,
            "countinference": self.count_inference,
            "service_secret": self.service_secret,
            **self._shared_options(),
            "response_mask_format": self.response_mask_format,
        }
        return {name: _query_value(value) for name, value in options.items() if value is not None}

    def url_options(self) -> dict[str, Any]:
        """Query parameters of `/infer/*` (billing flags only)."""
        options = {"countinference": self.count_inference, "service_secret": self.service_secret}
        return {name: _query_value(value) for name, value in options.items() if value is not None}


def _query_value(value: object) -> object:
    return str(value).lower() if isinstance(value, bool) else value
