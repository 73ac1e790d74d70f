"""Each family's pixel conventions and RF-DETR's post-processing parts, against independent computations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from visionserve.images.decode import DecodedImage
from visionserve.models.manifest import Normalization, ResizeMode
from visionserve.tasks.preprocess import ImageTransform, InputSpec, build_input_batch
from visionserve.tasks.rfdetr import COCO_CATEGORY_IDS, class_slots

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(480, 640), (300, 200), (50, 70)])
def test_rfdetr_input_is_the_normalised_float_image_stretched(size: tuple[int, int]) -> None:
    image = noise(*size)
    spec = InputSpec((56, 56), ResizeMode.STRETCH, None, normalization=Normalization.imagenet(), float_resize=True)
    tensor, _ = build_input_batch([DecodedImage.full(image)], spec)
    # rfdetr's order: RGB / 255, normalise, then resize the float image (bilinear, half-pixel, no antialias).
    normalised = (image[..., ::-1] / 255.0 - MEAN) / STD
    expected = cv2.resize(normalised.astype(np.float32), (56, 56), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    assert np.abs(tensor[0] - expected).max() < 1e-4
    # Rounding the resized image to bytes first, as a uint8 pipeline would, is measurably different.
    rounded = cv2.resize(image, (56, 56), interpolation=cv2.INTER_LINEAR)[..., ::-1] / 255.0
    assert np.abs(tensor[0] - ((rounded - MEAN) / STD).transpose(2, 0, 1)).max() > 1e-3


def test_rfdetr_letterbox_pads_with_the_mean_colour() -> None:
    spec = InputSpec((64, 64), ResizeMode.LETTERBOX, None, normalization=Normalization.imagenet(), float_resize=True)
    tensor, (transform,) = build_input_batch([DecodedImage.full(noise(32, 64))], spec)
    assert transform.pad_y == 16 and np.all(tensor[0, :, :16] == 0) and np.all(tensor[0, :, 48:] == 0)


def test_yolox_input_is_bgr_0_to_255_in_the_top_left_corner() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[..., 0] = 200  # blue in BGR
    spec = InputSpec((64, 64), ResizeMode.LETTERBOX, 114, bgr=True, pixel_scale=1.0, pad_top_left=True, ratio_gain=True)
    tensor, (transform,) = build_input_batch([DecodedImage.full(image)], spec)
    assert (transform.pad_x, transform.pad_y) == (0.0, 0.0)
    assert np.all(tensor[0, 0, :32] == 200) and np.all(tensor[0, 1:, :32] == 0)  # channel 0 is blue, not scaled
    assert np.all(tensor[0, :, 32:] == 114)
    # Sizes are truncated as YOLOX's preproc does (int(99 * 0.32) = 31 rows), and boxes map back by the ratio.
    odd = DecodedImage.full(np.full((99, 200, 3), 200, dtype=np.uint8))
    tensor, (transform,) = build_input_batch([odd], spec)
    assert np.all(tensor[0, 0, :31] == 200) and np.all(tensor[0, 0, 31:] == 114)
    assert transform.gain == 64 / 200 and transform.scale_y == 31 / 99
    assert transform.points_to_original(np.array([[64.0, 31.0]])).tolist() == [[200.0, 96.875]]  # 31 / 0.32


@pytest.mark.parametrize("size", [(300, 400), (400, 300), (224, 224), (500, 123)])
def test_classifier_resizes_as_torchvision_on_pil_images(size: tuple[int, int]) -> None:
    image = noise(*size, seed=1)
    spec = InputSpec((224, 224), ResizeMode.CENTER_CROP, 0, normalization=Normalization.imagenet(), antialias=True,
                     crop_fraction=0.875)
    tensor, _ = build_input_batch([DecodedImage.full(image)], spec)
    # torchvision: Resize(256) keeps the ratio with the long side truncated, PIL bilinear (antialiased), then
    # CenterCrop(224) with the offset rounded.
    height, width = size
    short = 256
    new_w, new_h = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
    resized = np.asarray(Image.fromarray(image[..., ::-1]).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = round((new_h - 224) / 2.0), round((new_w - 224) / 2.0)
    crop = resized[top : top + 224, left : left + 224] / 255.0
    expected = ((crop - MEAN) / STD).transpose(2, 0, 1)
    assert np.abs(tensor[0] - expected).max() < 1e-4


def test_class_slots_for_custom_coco_and_background_layouts() -> None:
    slots, names = class_slots(4, ["a", "b", "c"])  # custom: N + 1 logits, the last unused
    assert slots.tolist() == [0, 1, 2, -1] and names == ["a", "b", "c"]
    coco_names = [f"c{i}" for i in range(80)]
    slots, names = class_slots(91, coco_names)  # COCO: logits indexed by sparse category id
    assert slots[1] == 0 and slots[90] == 79 and slots[12] == -1 and slots[0] == -1
    assert [slots[i] for i in COCO_CATEGORY_IDS] == list(range(80))
    slots, names = class_slots(3, ["background_class83422", "x", "y"])
    assert slots.tolist() == [-1, 0, 1] and names == ["x", "y"]
    with pytest.raises(ValueError, match="5 class logits but 2 class names"):
        class_slots(5, ["a", "b"])


def test_rfdetr_masks_equal_a_full_bilinear_upsample() -> None:
    from visionserve.tasks.rfdetr import MaskSampler

    rng = np.random.default_rng(3)
    logits = np.full((16, 16), -3.0, dtype=np.float32)
    logits[4:9, 6:12] = rng.normal(1.0, 1.0, (5, 6))
    for width, height in ((100, 70), (37, 53), (640, 480)):
        transform = ImageTransform(width, height, 64 / width, 64 / height, 0.0, 0.0, image_width=width, image_height=height)
        patch = MaskSampler.for_image(transform, (64, 64), logits.shape).patch(logits)
        full = np.zeros((height, width), dtype=bool)
        rows, columns = patch.mask.shape
        full[patch.top : patch.top + rows, patch.left : patch.left + columns] = patch.mask
        # torch's interpolate(bilinear, align_corners=False) and OpenCV's float resize share the pixel-centre rule.
        expected = cv2.resize(logits, (width, height), interpolation=cv2.INTER_LINEAR) > 0
        assert np.count_nonzero(full != expected) <= 2  # ties at exactly 0 may round either way
        assert expected.any()
    assert not MaskSampler.for_image(transform, (64, 64), logits.shape).patch(-logits.clip(0)).mask.any()


def test_segmentation_drops_detections_without_a_mask(tmp_path) -> None:
    """A box inside the letterbox padding (nothing of the image under it) and one whose mask is empty: Ultralytics
    drops both, as their masks are empty; the server must not answer a zero-height box with an empty outline."""
    from tests.onnx_edit import constant_outputs
    from visionserve.models.inspect import ManifestOverrides, manifest_for
    from visionserve.models.loader import build_predictor
    from visionserve.models.manifest import ModelPackage
    from visionserve.runtime.onnx_model import OnnxModel, RuntimeOptions

    rows = np.zeros((1, 4 + 1 + 32, 3), dtype=np.float32)
    rows[0, :5, 0] = [32, 4, 20, 6, 0.9]  # in the top padding of a wide image
    rows[0, :5, 1] = [32, 32, 20, 20, 0.8]  # on the image, but with a mask that is negative everywhere
    rows[0, :5, 2] = [20, 32, 16, 16, 0.7]  # on the image, with a mask
    rows[0, 5, 2] = 1.0
    rows[0, 5, 1] = -1.0
    protos = np.zeros((1, 32, 16, 16), dtype=np.float32)
    protos[0, 0] = 5.0
    weights = constant_outputs(tmp_path / "seg.onnx", "images", [1, 3, 64, 64], {"output0": rows, "output1": protos},
                               metadata={"task": "segment", "names": "{0: 'thing'}", "imgsz": "[64, 64]"})
    runner = OnnxModel(weights, RuntimeOptions())
    manifest = manifest_for(runner, "s/1", ManifestOverrides())
    predictor = build_predictor(ModelPackage(manifest, weights), runner, 1)
    wide = DecodedImage.full(np.full((32, 128, 3), 128, dtype=np.uint8))  # letterboxed: 16 px of padding above
    for mask_format in ("polygon", "rle"):
        (answer,) = predictor.predict([wide], {"confidence": 0.5, "iou_threshold": 1.0, "response_mask_format": mask_format})
        assert [round(p["confidence"], 2) for p in answer["predictions"]] == [0.7]
        assert all(p["width"] > 0 and p["height"] > 0 for p in answer["predictions"])
