"""One entry point from an image declaration to decoded pixels, with the server's limits."""

from __future__ import annotations

import numpy as np

from visionserve.errors import InputImageError
from visionserve.images.budget import RequestPixels
from visionserve.images.decode import DecodedImage, DecodeLimits, NeededScale, check_pixel_count, decode_image
from visionserve.images.fetch import UrlFetcher
from visionserve.images.numpy_input import array_from_bytes, looks_like_array
from visionserve.images.sources import DECODED, ENCODED, ImageSpec, decode_base64

NUMPY_OFF = (
    "it is off by default because unpickling untrusted data can run code. Set VISIONSERVE_ALLOW_NUMPY_INPUT=1 to "
    "accept plain arrays (pickled, read by a restricted unpickler, or .npy bytes)."
)
NUMPY_DISABLED = f"NumPy image type is not supported in this configuration: {NUMPY_OFF}"
NUMPY_SNIFFED = f"The data looks like a pickled numpy array (or .npy bytes), but numpy input is off: {NUMPY_OFF}"


class ImageLoader:
    def __init__(self, fetcher: UrlFetcher, limits: DecodeLimits, allow_numpy: bool = False) -> None:
        self.fetcher = fetcher
        self.limits = limits
        self.allow_numpy = allow_numpy

    def load(
        self,
        spec: ImageSpec,
        auto_orient: bool = True,
        needed: NeededScale | None = None,
        budget: RequestPixels | None = None,
    ) -> DecodedImage:
        """The image as BGR uint8 pixels, whatever the declaration; `needed` allows draft decoding, `budget` is
        charged with the pixels before they are decoded."""
        charge = budget.charge if budget is not None else None
        if spec.type == DECODED and isinstance(spec.value, np.ndarray):  # in memory, never JSON (no arrays there)
            return self._decoded(spec.value, budget)
        if spec.type == "numpy":
            payload = spec.value if isinstance(spec.value, bytes) else decode_base64(spec.value)
            return self._array(payload, NUMPY_DISABLED, budget)
        data = self._encoded(spec)
        if looks_like_array(data):  # sent as image bytes, as the reference's v1 numpy example does
            return self._array(data, NUMPY_SNIFFED, budget)
        return decode_image(data, self.limits, auto_orient, needed, charge)

    def _array(self, payload: bytes, refusal: str, budget: RequestPixels | None) -> DecodedImage:
        if not self.allow_numpy:
            raise InputImageError(refusal)
        image = array_from_bytes(payload, self.limits.max_pixels)
        if budget is not None:
            budget.charge(image.width, image.height)
        return image

    def _decoded(self, pixels: np.ndarray, budget: RequestPixels | None) -> DecodedImage:
        """Pixels already in memory (a crop, a frame), under the same limits as decoded files."""
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise InputImageError("In-memory images must be BGR uint8 arrays of shape (height, width, 3).")
        height, width = pixels.shape[:2]
        if width == 0 or height == 0:
            raise InputImageError(f"The image is {width}x{height} pixels: it has no pixels.")
        check_pixel_count(width, height, self.limits.max_pixels)
        if budget is not None:
            budget.charge(width, height)
        return DecodedImage.full(np.ascontiguousarray(pixels))

    def _encoded(self, spec: ImageSpec) -> bytes:
        if spec.type == "base64":
            return decode_base64(spec.value)
        if spec.type == "url":
            if not isinstance(spec.value, str):
                raise InputImageError("Provided image URL is invalid: the value must be a string.")
            return self.fetcher.fetch(spec.value)
        if spec.type == ENCODED and isinstance(spec.value, bytes):  # uploads and raw bodies, never JSON
            return spec.value
        raise InputImageError(
            f"Image declaration contains not recognised image type {spec.type!r}; use 'base64', 'url' or 'numpy'."
        )
