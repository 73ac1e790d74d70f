"""Straightforward decodes of raw YOLO ONNX outputs, written for the tests and sharing no code with the server:
Ultralytics' letterbox and centre crop with OpenCV, OpenCV's NMS, full-resolution masks, a single gain back to
the image. The server's answers must equal what these give, within a pixel."""

from __future__ import annotations

import ast
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
import onnxruntime as ort


@dataclass
class Letterboxed:
    tensor: np.ndarray
    gain: float
    left: int
    top: int
    width: int
    height: int

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Input pixels → image pixels, clipped to the image."""
        out = np.empty_like(xy, dtype=np.float64)
        out[..., 0] = np.clip((xy[..., 0] - self.left) / self.gain, 0, self.width)
        out[..., 1] = np.clip((xy[..., 1] - self.top) / self.gain, 0, self.height)
        return out


def metadata(session: ort.InferenceSession) -> dict[str, object]:
    props = session.get_modelmeta().custom_metadata_map
    return {key: ast.literal_eval(value) for key, value in props.items() if key in ("imgsz", "names", "kpt_shape")}


def to_tensor(bgr: np.ndarray) -> np.ndarray:
    return (bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)) / 255.0


def letterbox(bgr: np.ndarray, side: int) -> Letterboxed:
    height, width = bgr.shape[:2]
    gain = min(side / height, side / width)
    new_w, new_h = int(round(width * gain)), int(round(height * gain))
    pad_w, pad_h = (side - new_w) / 2, (side - new_h) / 2
    top, bottom = int(round(pad_h - 0.1)), int(round(pad_h + 0.1))
    left, right = int(round(pad_w - 0.1)), int(round(pad_w + 0.1))
    resized = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    boxed = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return Letterboxed(to_tensor(boxed), gain, left, top, width, height)


def center_crop(bgr: np.ndarray, side: int) -> np.ndarray:
    """Ultralytics' classifier transform: torchvision's Resize(side) on a PIL image (short side to `side`, long
    side truncated, antialiased bilinear), then CenterCrop(side)."""
    height, width = bgr.shape[:2]
    size = (side, int(side * height / width)) if width <= height else (int(side * width / height), side)
    resized = np.asarray(Image.fromarray(bgr).resize(size, Image.Resampling.BILINEAR))
    top, left = int(round((resized.shape[0] - side) / 2.0)), int(round((resized.shape[1] - side) / 2.0))
    return to_tensor(resized[top : top + side, left : left + side])


@dataclass
class Detection:
    class_id: int
    score: float
    box: np.ndarray  # xyxy, input pixels
    extra: np.ndarray


def detections(rows: np.ndarray, num_classes: int, confidence: float, iou: float) -> list[Detection]:
    """rows: [N, 4 + C + E], anchors as rows (cx, cy, w, h, class scores, extras); per-class OpenCV NMS."""
    scores = rows[:, 4 : 4 + num_classes]
    class_ids, best = scores.argmax(1), scores.max(1)
    keep = best >= confidence
    rows, class_ids, best = rows[keep], class_ids[keep], best[keep]
    xywh = [[cx - w / 2, cy - h / 2, w, h] for cx, cy, w, h in rows[:, :4].tolist()]
    kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, best.tolist(), class_ids.tolist(), confidence, iou)).reshape(-1)
    found = []
    for index in kept:
        x, y, w, h = xywh[index]
        box = np.array([x, y, x + w, y + h])
        found.append(Detection(int(class_ids[index]), float(best[index]), box, rows[index, 4 + num_classes :]))
    return found


def full_mask(protos: np.ndarray, coefficients: np.ndarray, box: np.ndarray, side: int) -> np.ndarray:
    """The reference's accurate mode: the whole mask upsampled to the input, then cut to the box."""
    channels, height, width = protos.shape
    logits = (coefficients @ protos.reshape(channels, -1)).reshape(height, width)
    mask = cv2.resize(1 / (1 + np.exp(-logits)), (side, side), interpolation=cv2.INTER_LINEAR)
    rows, columns = np.arange(side)[:, None], np.arange(side)[None, :]
    inside = (columns >= box[0]) & (columns < box[2]) & (rows >= box[1]) & (rows < box[3])
    return (mask > 0.5) & inside
