"""Runtime values flowing between steps: images (with where they came from) and detections (numpy arrays).

An image made from another (a crop, a slice) knows its parent's id and where it lies in its parent and in the root
(input) image, so detections made on it can be moved back to the root's coordinates (`coordinates_system: parent`).
Detections are serialised as the reference does (A5), so `supervision.Detections.from_inference` reads them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Origin:
    """Where an image lies in another one: its top-left corner there, and that other image's size."""

    image_id: str
    offset_x: int
    offset_y: int
    width: int
    height: int

    def as_json(self) -> dict[str, int]:
        return {"offset_x": self.offset_x, "offset_y": self.offset_y, "width": self.width, "height": self.height}


@dataclass(frozen=True)
class WorkflowImage:
    """BGR uint8 pixels with their lineage; an input image is its own parent and root."""

    pixels: np.ndarray
    image_id: str
    parent: Origin
    root: Origin
    video_metadata: Mapping[str, Any] | None = None

    @classmethod
    def input(cls, pixels: np.ndarray, image_id: str, video_metadata: Mapping[str, Any] | None = None) -> WorkflowImage:
        height, width = pixels.shape[:2]
        origin = Origin(image_id, 0, 0, width, height)
        return cls(pixels, image_id, origin, origin, video_metadata)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def is_root(self) -> bool:
        return self.root.image_id == self.image_id

    def cropped(self, x1: int, y1: int, x2: int, y2: int, image_id: str) -> WorkflowImage:
        """The pixels of [x1, x2) x [y1, y2) (clipped to the image) as a child image: a view, no copy."""
        x1, y1 = max(0, int(x1)), max(0, int(y1))
        x2, y2 = max(x1, min(self.width, int(x2))), max(y1, min(self.height, int(y2)))
        parent = Origin(self.image_id, x1, y1, self.width, self.height)
        root = Origin(self.root.image_id, self.root.offset_x + x1, self.root.offset_y + y1, self.root.width,
                      self.root.height)  # fmt: skip
        return WorkflowImage(self.pixels[y1:y2, x1:x2], image_id, parent, root, self.video_metadata)

    def with_pixels(self, pixels: np.ndarray) -> WorkflowImage:
        """The same image (same lineage), drawn on or otherwise changed: visualisation blocks answer this."""
        return replace(self, pixels=pixels)


def _strings(values: Any, count: int) -> np.ndarray:
    array = np.empty(count, dtype=object)
    array[:] = list(values)
    return array


@dataclass(frozen=True)
class Detections:
    """Detections on one image, in that image's coordinates. `polygons` and `keypoints` are per detection when the
    model makes them; `extra` holds further per-detection fields (lists of N values) that serialise as keys."""

    xyxy: np.ndarray  # (N, 4) float64
    confidence: np.ndarray  # (N,) float64
    class_id: np.ndarray  # (N,) int64
    class_name: np.ndarray  # (N,) object (str)
    detection_id: np.ndarray  # (N,) object (str)
    image: WorkflowImage | None  # the image they were made on (its lineage and size); None: unknown
    image_size: tuple[int, int] | None  # (width, height) of that image
    polygons: list[np.ndarray] | None = None  # each (K, 2) float64
    keypoints: list[list[dict[str, Any]]] | None = None  # each [{x, y, confidence, class_id, class}, ...]
    tracker_id: np.ndarray | None = None  # (N,) int64
    extra: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def from_core(cls, response: Mapping[str, Any], image: WorkflowImage | None) -> Detections:
        """From a core answer (`/infer/object_detection` and friends) for `image`."""
        predictions = response.get("predictions") or []
        count = len(predictions)
        xyxy = np.array(
            [[p["x"] - p["width"] / 2, p["y"] - p["height"] / 2, p["x"] + p["width"] / 2, p["y"] + p["height"] / 2]
             for p in predictions], dtype=np.float64,
        ).reshape(count, 4)  # fmt: skip
        polygons = keypoints = None
        if any("points" in p for p in predictions):
            polygons = [np.array([[q["x"], q["y"]] for q in p.get("points") or []], dtype=np.float64).reshape(-1, 2)
                        for p in predictions]  # fmt: skip
        if any("keypoints" in p for p in predictions):
            keypoints = [[dict(k) for k in p.get("keypoints") or []] for p in predictions]
        size = response.get("image") or {}
        return cls(
            xyxy=xyxy,
            confidence=np.array([p["confidence"] for p in predictions], dtype=np.float64),
            class_id=np.array([p["class_id"] for p in predictions], dtype=np.int64),
            class_name=_strings((p["class"] for p in predictions), count),
            detection_id=_strings((p.get("detection_id") or str(uuid.uuid4()) for p in predictions), count),
            image=image,
            image_size=(size["width"], size["height"]) if size else (image.width, image.height) if image else None,
            polygons=polygons,
            keypoints=keypoints,
        )

    def selected(self, keep: np.ndarray) -> Detections:
        """Only the detections where `keep` (a boolean mask or index array) says so."""
        indices = np.arange(len(self))[keep]
        return replace(
            self,
            xyxy=self.xyxy[indices], confidence=self.confidence[indices], class_id=self.class_id[indices],
            class_name=self.class_name[indices], detection_id=self.detection_id[indices],
            polygons=None if self.polygons is None else [self.polygons[i] for i in indices],
            keypoints=None if self.keypoints is None else [self.keypoints[i] for i in indices],
            tracker_id=None if self.tracker_id is None else self.tracker_id[indices],
            extra={key: [values[i] for i in indices] for key, values in self.extra.items()},
        )  # fmt: skip

    def shifted(self, dx: float, dy: float) -> Detections:
        """Every coordinate moved by (dx, dy): boxes, polygons and keypoints."""
        if dx == 0 and dy == 0:
            return self
        keypoints = None
        if self.keypoints is not None:
            keypoints = [[{**k, "x": k["x"] + dx, "y": k["y"] + dy} for k in points] for points in self.keypoints]
        return replace(
            self,
            xyxy=self.xyxy + np.array([dx, dy, dx, dy]),
            polygons=None if self.polygons is None else [polygon + np.array([dx, dy]) for polygon in self.polygons],
            keypoints=keypoints,
        )

    def grown(self, width: float | np.ndarray, height: float | np.ndarray) -> Detections:
        """Boxes grown by `width` and `height` (half on each side, whole pixels), kept within the image."""
        half_w, half_h = np.floor_divide(width, 2), np.floor_divide(height, 2)
        grown = self.xyxy + np.stack([-half_w, -half_h, half_w, half_h], axis=-1)
        if self.image_size is not None:
            image_width, image_height = self.image_size
            grown = np.clip(grown, 0, [image_width, image_height, image_width, image_height])
        return replace(self, xyxy=grown.astype(np.float64).reshape(len(self), 4))

    def in_root_coordinates(self) -> Detections:
        """The same detections in the input image's coordinates (the `parent` coordinates system of outputs)."""
        if self.image is None or self.image.is_root:
            return self
        root = self.image.root
        return replace(self.shifted(root.offset_x, root.offset_y), image_size=(root.width, root.height))

    @property
    def sizes(self) -> np.ndarray:
        """Box areas in pixels (the operation language's `size`)."""
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    def as_json(self, root_coordinates: bool = True) -> dict[str, Any]:
        """The reference's serialised form (A5); in the root image's coordinates unless asked otherwise."""
        value = self.in_root_coordinates() if root_coordinates else self
        width, height = value.image_size if value.image_size and len(value) else (None, None)
        predictions = [value._prediction(index) for index in range(len(value))]
        return {"image": {"width": width, "height": height}, "predictions": predictions}

    def _prediction(self, index: int) -> dict[str, Any]:
        x1, y1, x2, y2 = (float(v) for v in self.xyxy[index])
        prediction: dict[str, Any] = {
            "width": x2 - x1, "height": y2 - y1, "x": (x1 + x2) / 2, "y": (y1 + y2) / 2,
            "confidence": float(self.confidence[index]), "class_id": int(self.class_id[index]),
            "class": str(self.class_name[index]), "detection_id": str(self.detection_id[index]),
        }  # fmt: skip
        image = self.image
        if image is not None:
            prediction["parent_id"] = image.image_id
            if not image.is_root:
                prediction["parent_origin"] = image.parent.as_json()
                prediction["root_parent_id"] = image.root.image_id
                prediction["root_parent_origin"] = image.root.as_json()
        if self.tracker_id is not None:
            prediction["tracker_id"] = int(self.tracker_id[index])
        if self.polygons is not None:
            prediction["points"] = [{"x": float(x), "y": float(y)} for x, y in self.polygons[index]]
        if self.keypoints is not None:
            prediction["keypoints"] = self.keypoints[index]
        for key, values in self.extra.items():
            prediction[key] = values[index]
        return prediction
