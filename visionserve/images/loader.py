"""One entry point from an image declaration to decoded pixels, with the server's limits."""

from __future__ import annotations

import numpy as np

from visionserve.errors import InputImageError
from visionserve.images.decode import decode_image
from visionserve.images.fetch import UrlFetcher
from visionserve.images.sources import ImageSpec, decode_base64


class ImageLoader:
    def __init__(self, fetcher: UrlFetcher, max_pixels: int) -> None:
        self.fetcher = fetcher
        self.max_pixels = max_pixels

    def encoded_bytes(self, spec: ImageSpec) -> bytes:
        if spec.type == "base64":
            return decode_base64(spec.value)
        if spec.type == "url":
            if not isinstance(spec.value, str):
                raise InputImageError("Provided image URL is invalid: the value must be a string.")
            return self.fetcher.fetch(spec.value)
        raise InputImageError(
            f"Image declaration contains not recognised image type {spec.type!r}; use 'base64' or 'url'."
        )

    def load(self, spec: ImageSpec, auto_orient: bool = True) -> np.ndarray:
        return decode_image(self.encoded_bytes(spec), self.max_pixels, auto_orient)
