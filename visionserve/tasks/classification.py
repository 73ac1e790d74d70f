"""Image classification: single-label (sorted `predictions`, `top`, `confidence`) or multi-label (`predictions`
keyed by class, `predicted_classes`), shaped as the reference does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from visionserve.models.manifest import ResizeMode, Task
from visionserve.tasks.base import Options, Predictor, ResponseFields, confidence_option
from visionserve.tasks.preprocess import ImageTransform, InputSpec

DEFAULT_CONFIDENCE = 0.4
KEYWORD_CONFIDENCE = 0.5  # what the reference uses for "best" and "default" on classifiers


def _as_probabilities(scores: np.ndarray, multilabel: bool) -> np.ndarray:
    """Exports usually end in softmax (or sigmoid for multi-label); raw logits are converted here."""
    if multilabel:
        return scores if scores.min() >= 0 and scores.max() <= 1 else 1 / (1 + np.exp(-scores))
    if scores.min() >= 0 and abs(float(scores.sum()) - 1.0) < 1e-3:
        return scores
    exponentials = np.exp(scores - scores.max())
    return exponentials / exponentials.sum()


class ClassificationPredictor(Predictor):
    task = Task.CLASSIFICATION

    def input_spec(self) -> InputSpec:
        """Stretched classifiers come from Roboflow packages (the others centre-crop): the reference resizes their
        pixels as float32, never rounded back to bytes."""
        spec = super().input_spec()
        return replace(spec, float_resize=spec.resize is ResizeMode.STRETCH)

    def configure(self, warmup: list[np.ndarray]) -> None:
        shape = warmup[0].shape
        if len(shape) != 2 or shape[1] != len(self.class_names):
            raise ValueError(f"expected a [B, {len(self.class_names)}] output of class scores, got {list(shape)}")

    def parse_options(self, options: Options) -> float:
        if isinstance(options.get("confidence"), str):
            return KEYWORD_CONFIDENCE
        return confidence_option(options, DEFAULT_CONFIDENCE)

    def postprocess(self, outputs: list[np.ndarray], transform: ImageTransform, threshold: float) -> ResponseFields:
        scores = _as_probabilities(outputs[0].astype(np.float64), self.manifest.multilabel)
        if self.manifest.multilabel:
            return {
                "predictions": {
                    name: {"confidence": float(score), "class_id": index}
                    for index, (name, score) in enumerate(zip(self.class_names, scores.tolist()))
                },
                "predicted_classes": [name for name, score in zip(self.class_names, scores.tolist()) if score > threshold],
            }
        predictions = [
            {"class": self.class_name(index), "class_id": index, "confidence": round(float(scores[index]), 4)}
            for index in np.argsort(-scores, kind="stable").tolist()
            if scores[index] >= threshold
        ]
        return {
            "predictions": predictions,
            "top": predictions[0]["class"] if predictions else "",
            "confidence": predictions[0]["confidence"] if predictions else 0.0,
        }
