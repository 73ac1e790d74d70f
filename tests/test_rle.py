"""COCO compressed RLE, checked against a decoder written from the format's description."""

import numpy as np
import pytest

from visionserve.tasks.rle import rle_encode


def decode(rle: dict) -> np.ndarray:
    counts, value, index, text = [], 0, 0, rle["counts"]
    while index < len(text):
        value, shift, more = 0, 0, True
        while more:
            group = ord(text[index]) - 48
            value |= (group & 0x1F) << (5 * shift)
            more = bool(group & 0x20)
            index += 1
            shift += 1
            if not more and group & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    height, width = rle["size"]
    flat = np.zeros(height * width, dtype=bool)
    position, on = 0, False
    for count in counts:
        flat[position : position + count] = on
        position += count
        on = not on
    return flat.reshape((width, height)).T


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((rng.integers(1, 60), rng.integers(1, 60))) > rng.uniform(0.1, 0.9)
    assert np.array_equal(decode(rle_encode(mask)), mask)


def test_known_encoding_and_edge_cases() -> None:
    mask = np.zeros((4, 3), dtype=bool)
    mask[1:3, 1] = True  # column-major: 5 zeros, 2 ones, 5 zeros
    assert rle_encode(mask) == {"size": [4, 3], "counts": "525"}  # runs 5, 2, 5; deltas from the 4th run on
    full = np.ones((3, 2), dtype=bool)
    assert np.array_equal(decode(rle_encode(full)), full)
    large = np.zeros((500, 400), dtype=bool)
    large[100:350, 50:390] = True
    assert np.array_equal(decode(rle_encode(large)), large)
