"""Image → network input tensor, resized once and written straight into the batch tensor.

Each image's `ImageTransform` records exactly how it was placed, so outputs map back without rounding drift.
Families differ in how they want pixels (`InputSpec`): Ultralytics letterboxes RGB scaled to 0..1, YOLOX pads at
the top-left and keeps BGR 0..255, RF-DETR normalises with ImageNet statistics and resamples without rounding to
bytes, torchvision-style classifiers resize with antialiasing before a centre crop, torchvision segmenters resize
the short side and keep the aspect ratio (a tensor of each image's own size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from visionserve.errors import InvalidRequestError
from visionserve.images.decode import DecodedImage
from visionserve.models.manifest import Normalization, ResizeMode

MAX_INPUT_PIXELS = 4096 * 4096  # the largest public detectors take 1280 to 2048 pixels a side


@dataclass(frozen=True)
class ImageTransform:
    """Image region → network input: `input = (original - offset) * scale + pad`, per axis.

    The region is the whole image, or the model's static crop of it, whose top-left corner is the offset. The
    per-axis scales are how the pixels were resampled (resized size / original size, the sizes rounded), which is
    how Ultralytics 8.4 maps boxes and points back (scale_boxes, scale_coords) and how masks are cropped and
    resized back. Families that divide by the one letterbox ratio instead, min(input_h / h, input_w / w), set
    `gain` (super-gradients, YOLOX, the reference's RF-DETR letterbox): up to 0.7 px apart at a far edge."""

    original_width: int  # of the region fed to the model
    original_height: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    offset_x: int = 0
    offset_y: int = 0
    image_width: int = 0  # the whole decoded image, static crop or not
    image_height: int = 0
    gain: float | None = None  # the one factor boxes and points map back by; None: the per-axis scales

    def input_to_original_axes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Per axis, (a, c) such that original = input * a + c, as the pixels were resampled (masks, maps)."""
        return (
            (1 / self.scale_x, self.offset_x - self.pad_x / self.scale_x),
            (1 / self.scale_y, self.offset_y - self.pad_y / self.scale_y),
        )

    def points_to_original(self, points: np.ndarray, clip: bool = True) -> np.ndarray:
        """Map [..., (x, y)] pairs from input pixels to original pixels, clipped to the region unless told not."""
        x = (points[..., 0] - self.pad_x) / (self.gain or self.scale_x)
        y = (points[..., 1] - self.pad_y) / (self.gain or self.scale_y)
        if clip:
            x, y = np.clip(x, 0, self.original_width), np.clip(y, 0, self.original_height)
        return np.stack([x + self.offset_x, y + self.offset_y], axis=-1).astype(np.float32)

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map xyxy boxes from input pixels to original pixels, clipped to the region."""
        return self.points_to_original(boxes.reshape(-1, 2, 2)).reshape(-1, 4)


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its input: size, placement, channel order, value scale and normalisation."""

    size: tuple[int, int]  # (height, width)
    resize: ResizeMode = ResizeMode.LETTERBOX
    pad_value: float | None = 114.0  # in 0..255 pixel units; None: the normalisation mean (0 after it, RF-DETR)
    bgr: bool = False  # feed BGR (YOLOX) instead of RGB
    pixel_scale: float = 1.0 / 255.0  # 1.0 keeps 0..255 (YOLOX)
    normalization: Normalization | None = None
    pad_top_left: bool = False  # letterbox in the top-left corner, sizes truncated (YOLOX); else centred
    float_resize: bool = False  # resample float pixels, never rounded to bytes (RF-DETR)
    antialias: bool = False  # PIL's antialiased bilinear, as torchvision's Resize on PIL images
    crop_fraction: float = 1.0  # centre crop: crop side / resized short side (torchvision 224/256)
    ratio_gain: bool = False  # letterbox: boxes and points map back by the ratio (ImageTransform.gain)
    channel_scale: np.ndarray = field(init=False, repr=False, compare=False)
    channel_offset: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """tensor = pixel * scale - offset, per input channel (R, G, B or B, G, R)."""
        mean = np.zeros(3) if self.normalization is None else np.array(self.normalization.mean)
        std = np.ones(3) if self.normalization is None else np.array(self.normalization.std)
        if self.bgr:
            mean, std = mean[::-1], std[::-1]
        object.__setattr__(self, "channel_scale", (self.pixel_scale / std).astype(np.float32).reshape(3, 1, 1))
        object.__setattr__(self, "channel_offset", (mean / std).astype(np.float32).reshape(3, 1, 1))

    @property
    def normalizes(self) -> bool:
        return self.normalization is not None

    def pad_tensor_value(self) -> np.ndarray:
        if self.pad_value is None:
            return np.zeros((3, 1, 1), dtype=np.float32)
        return self.pad_value * self.channel_scale - self.channel_offset


def _resized(pixels: np.ndarray, width: int, height: int, spec: InputSpec) -> np.ndarray:
    if (pixels.shape[1], pixels.shape[0]) == (width, height):
        return pixels
    if spec.antialias:  # per-channel resampling: the channel order does not matter to PIL
        return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
    source = pixels.astype(np.float32) if spec.float_resize else pixels
    return cv2.resize(source, (width, height), interpolation=cv2.INTER_LINEAR)


def _write(image_bgr: np.ndarray, out: np.ndarray, spec: InputSpec) -> None:
    """HWC BGR pixels → CHW tensor values as the model wants them, into `out` (a view of the batch tensor)."""
    channels = image_bgr.transpose(2, 0, 1)
    np.multiply(channels if spec.bgr else channels[::-1], spec.channel_scale, out=out, casting="unsafe")
    if spec.normalizes:
        out -= spec.channel_offset


def letterbox_into(image: DecodedImage, out: np.ndarray, spec: InputSpec) -> ImageTransform:
    """Fit the image inside `out` ([3, H, W]) keeping its aspect ratio, on a border of the pad colour."""
    target_h, target_w = out.shape[1:]
    width, height = image.width, image.height
    ratio = min(target_h / height, target_w / width)
    size = math.floor if spec.pad_top_left else round
    new_w = max(1, min(target_w, size(width * ratio)))
    new_h = max(1, min(target_h, size(height * ratio)))
    left, top = (0, 0) if spec.pad_top_left else ((target_w - new_w) // 2, (target_h - new_h) // 2)
    pad = spec.pad_tensor_value()  # the border only: the image covers the rest
    out[:, :top], out[:, top + new_h :] = pad, pad
    out[:, top : top + new_h, :left], out[:, top : top + new_h, left + new_w :] = pad, pad
    _write(_resized(image.pixels, new_w, new_h, spec), out[:, top : top + new_h, left : left + new_w], spec)
    gain = ratio if spec.ratio_gain else None
    return ImageTransform(width, height, new_w / width, new_h / height, float(left), float(top), gain=gain)


def stretch_into(image: DecodedImage, out: np.ndarray, spec: InputSpec) -> ImageTransform:
    """Resize the image to fill `out` exactly, ignoring its aspect ratio."""
    target_h, target_w = out.shape[1:]
    width, height = image.width, image.height
    _write(_resized(image.pixels, target_w, target_h, spec), out, spec)
    return ImageTransform(width, height, target_w / width, target_h / height, 0.0, 0.0)


def crop_resize_size(width: int, height: int, target_h: int, target_w: int, crop_fraction: float) -> tuple[int, int]:
    """The size to resize to before a centre crop, as torchvision's `Resize` computes it (Ultralytics' and
    torchvision's classifier transforms): for a square target the short side becomes `side / crop_fraction` and
    the long side keeps the ratio, truncated; a non-square target is resized to exactly its (enlarged) size."""
    if target_h != target_w:
        return math.floor(target_w / crop_fraction), math.floor(target_h / crop_fraction)
    short = math.floor(target_h / crop_fraction)
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def center_crop_into(image: DecodedImage, out: np.ndarray, spec: InputSpec) -> ImageTransform:
    """Scale the short side to fit, then keep the centre (classifiers)."""
    target_h, target_w = out.shape[1:]
    width, height = image.width, image.height
    new_w, new_h = crop_resize_size(width, height, target_h, target_w, spec.crop_fraction)
    left, top = round((new_w - target_w) / 2.0), round((new_h - target_h) / 2.0)
    resized = _resized(image.pixels, new_w, new_h, spec)
    _write(resized[top : top + target_h, left : left + target_w], out, spec)
    return ImageTransform(width, height, new_w / width, new_h / height, float(-left), float(-top))


_PLACE = {
    ResizeMode.LETTERBOX: letterbox_into,
    ResizeMode.CENTER_CROP: center_crop_into,
    ResizeMode.STRETCH: stretch_into,
    ResizeMode.SHORT_SIDE: stretch_into,  # into a tensor already of the image's own resized size
}


def tensor_size(images: list[DecodedImage], spec: InputSpec) -> tuple[int, int]:
    """The batch tensor's (height, width): the spec's, or with short-side resizing the image's own size once its
    short side is the spec's (torchvision's `Resize(int)`: the long side truncated), one image per batch."""
    if spec.resize is not ResizeMode.SHORT_SIDE:
        return spec.size
    if len(images) != 1:
        raise ValueError("short-side resizing takes one image per forward pass")
    side = spec.size[0]
    width, height = crop_resize_size(images[0].width, images[0].height, side, side, 1.0)
    if width * height > MAX_INPUT_PIXELS:
        raise InvalidRequestError(
            f"The image is {images[0].width}x{images[0].height}: with its short side resized to {side} the model "
            f"input would be {width}x{height}, over the limit of {MAX_INPUT_PIXELS:,} pixels."
        )
    return height, width


def build_input_batch(
    images: list[DecodedImage], spec: InputSpec, batch_size: int | None = None
) -> tuple[np.ndarray, list[ImageTransform]]:
    """Stack images into one float32 [B, 3, H, W] tensor, each resized once, straight into its slot.

    `batch_size` pads the batch with zeros for models with a fixed batch axis.
    """
    rows = max(len(images), batch_size or 0)
    tensor = np.empty((rows, 3, *tensor_size(images, spec)), dtype=np.float32)  # every slot writes all of its values
    tensor[len(images) :] = 0
    place = _PLACE[spec.resize]
    return tensor, [place(image, tensor[index], spec) for index, image in enumerate(images)]
