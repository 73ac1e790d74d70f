"""`numpy` image inputs: a pickled ndarray (the reference's format) or `.npy` bytes.

Unpickling untrusted bytes can run arbitrary code, so pickles go through an unpickler that can only build plain
numpy arrays: every global it is asked for must be on a short list of numpy's own array constructors.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from visionserve.errors import InputImageError
from visionserve.images.decode import DecodedImage, check_pixel_count

NPY_MAGIC = b"\x93NUMPY"
# How `pickle.dumps(ndarray)` starts: protocols 2-5 open with PROTO n; 0 and 1 name numpy's reconstructor first.
_PICKLE_STARTS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6)) + (b"cnumpy",)

# What `pickle.dumps(ndarray)` refers to, across numpy 1.x (numpy.core) and 2.x (numpy._core).
_ARRAY_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # protocols 0-2 carry the raw bytes as latin-1 text
    }
)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return super().find_class(module, name)


def looks_like_array(data: bytes) -> bool:
    """The bytes start as a pickle or an .npy file do (no image format starts so)."""
    return data.startswith((NPY_MAGIC, *_PICKLE_STARTS))


def _deserialize(data: bytes) -> object:
    if data.startswith(NPY_MAGIC):
        return np.load(io.BytesIO(data), allow_pickle=False)
    return _ArrayOnlyUnpickler(io.BytesIO(data)).load()


def array_from_bytes(data: bytes, max_pixels: int) -> DecodedImage:
    """Bytes → an HxWx3 uint8 BGR image (2-D and single-channel arrays are taken as grayscale)."""
    try:
        array = _deserialize(data)
    except Exception as error:  # any malformed or refused payload: the caller only needs to know it is unusable
        raise InputImageError(
            f"Could not deserialize the numpy payload ({type(error).__name__}): only plain arrays, pickled or "
            "as .npy bytes, are accepted."
        ) from None
    if type(array) is not np.ndarray:
        raise InputImageError("Data provided as input could not be decoded into np.ndarray object.")
    if array.dtype != np.uint8:
        raise InputImageError(f"For image given as np.ndarray expected dtype uint8, got {array.dtype}.")
    if array.ndim not in (2, 3):
        raise InputImageError("For image given as np.ndarray expected 2 or 3 dimensions.")
    if array.ndim == 3 and array.shape[2] not in (1, 3):
        raise InputImageError("For image given as np.ndarray expected 1 or 3 channels.")
    height, width = array.shape[:2]
    check_pixel_count(width, height, max_pixels)
    if height == 0 or width == 0:
        raise InputImageError("For image given as np.ndarray expected a non-empty image.")
    if array.ndim == 2 or array.shape[2] == 1:
        array = np.repeat(array.reshape(height, width, 1), 3, axis=2)
    return DecodedImage.full(np.ascontiguousarray(array))
