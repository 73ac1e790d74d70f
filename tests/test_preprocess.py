import numpy as np
import pytest

from visionserve.images.decode import DecodedImage
from visionserve.models.manifest import ResizeMode
from visionserve.tasks.preprocess import _PLACE, InputSpec, build_input_batch


@pytest.mark.parametrize("size", [(480, 640), (640, 480), (320, 320), (1080, 1920), (37, 1001), (200, 100)])
def test_letterbox_places_the_image_centred_and_maps_boxes_back_exactly(size: tuple[int, int]) -> None:
    height, width = size
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 2] = 255  # pure red in BGR
    tensor, (transform,) = build_input_batch([DecodedImage.full(image)], InputSpec((320, 320), ResizeMode.LETTERBOX, 114))
    assert tensor.shape == (1, 3, 320, 320) and tensor.dtype == np.float32
    red = tensor[0, 0] > 0.99  # channel 0 is R after BGR → RGB
    rows, cols = np.flatnonzero(red.any(axis=1)), np.flatnonzero(red.any(axis=0))
    assert (cols[0], rows[0]) == (transform.pad_x, transform.pad_y)
    assert abs(transform.pad_x - (320 - 1 - cols[-1])) <= 1 and abs(transform.pad_y - (320 - 1 - rows[-1])) <= 1
    assert np.allclose(tensor[0, :, 0, 0], 114 / 255) or (transform.pad_x == 0 and transform.pad_y == 0)
    # The image corners land on the edges of the placed region, and map back to the original corners.
    placed = np.array([[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]], dtype=np.float32)
    assert np.allclose(transform.boxes_to_original(placed), [[0, 0, width, height]], atol=1e-3)


def test_stretch_fills_the_input_and_maps_back() -> None:
    image = np.full((100, 400, 3), 255, dtype=np.uint8)
    tensor, (transform,) = build_input_batch([DecodedImage.full(image)], InputSpec((320, 320), ResizeMode.STRETCH, 114))
    assert np.allclose(tensor, 1.0)
    box = np.array([[80, 160, 160, 320]], dtype=np.float32)
    assert np.allclose(transform.boxes_to_original(box), [[100, 50, 200, 100]])


def test_boxes_are_clipped_to_the_image() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    _, (transform,) = build_input_batch([DecodedImage.full(image)], InputSpec((320, 320), ResizeMode.LETTERBOX, 114))
    box = np.array([[-50, -50, 400, 400]], dtype=np.float32)
    assert np.allclose(transform.boxes_to_original(box), [[0, 0, 200, 100]])


def test_channels_are_rgb_scaled_to_unit_range_and_batch_is_padded() -> None:
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[..., 0] = 255  # blue in BGR
    tensor, _ = build_input_batch([DecodedImage.full(image)] * 2, InputSpec((32, 32), ResizeMode.LETTERBOX, 114), batch_size=4)
    assert tensor.shape == (4, 3, 32, 32)
    assert np.allclose(tensor[:2, 2], 1.0) and np.allclose(tensor[:2, :2], 0.0)
    assert not tensor[2:].any()


def test_center_crop_keeps_the_middle_of_the_long_side() -> None:
    image = np.zeros((100, 300, 3), dtype=np.uint8)
    image[:, 100:200] = 255  # a white middle third
    tensor, (transform,) = build_input_batch([DecodedImage.full(image)], InputSpec((64, 64), ResizeMode.CENTER_CROP, 0))
    assert np.allclose(tensor, 1.0, atol=0.02)  # only the white middle is left
    tall = np.zeros((300, 100, 3), dtype=np.uint8)
    tensor, _ = build_input_batch([DecodedImage.full(tall)], InputSpec((32, 32), ResizeMode.CENTER_CROP, 0))
    assert tensor.shape == (1, 3, 32, 32)
    centre = np.array([[32, 32, 32, 32]], dtype=np.float32)
    assert np.allclose(transform.boxes_to_original(centre), [[150, 50, 150, 50]], atol=1)


@pytest.mark.parametrize(
    "spec",
    [
        InputSpec((64, 64)),
        InputSpec((64, 48), pad_top_left=True, bgr=True, pixel_scale=1.0),
        InputSpec((64, 64), resize=ResizeMode.STRETCH),
        InputSpec((56, 56), resize=ResizeMode.CENTER_CROP, crop_fraction=0.875),
        InputSpec((64, 64), pad_value=None, float_resize=True),
    ],
    ids=["letterbox", "top-left", "stretch", "centre-crop", "float"],
)
@pytest.mark.parametrize("size", [(40, 30), (30, 40), (64, 64), (200, 7)])
def test_every_value_of_a_slot_is_written(spec: InputSpec, size: tuple[int, int]) -> None:
    """The batch tensor is allocated without zeroing: each placement must write all of its slot, borders too,
    and rows beyond the images of a fixed batch must be zero."""
    pixels = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    slot = np.full((3, *spec.size), np.nan, dtype=np.float32)
    _PLACE[spec.resize](DecodedImage.full(pixels), slot, spec)
    assert not np.isnan(slot).any()
    tensor, _ = build_input_batch([DecodedImage.full(pixels)], spec, batch_size=3)
    assert not tensor[1:].any() and np.array_equal(tensor[0], slot)
