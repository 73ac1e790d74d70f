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

_NDARRAY = object()  # stands for numpy.ndarray in a pickle: it may be named, never called


def _empty_array(subtype: object, shape: object, typecode: object) -> np.ndarray:
    """numpy's `_reconstruct`, as pickles use it: an empty array that BUILD then fills from the payload. Any other
    shape would be memory nobody wrote (another caller's pixels)."""
    if subtype is not _NDARRAY or tuple(shape) != (0,):  # type: ignore[call-overload]
        raise pickle.UnpicklingError("_reconstruct is only allowed for an empty ndarray")
    return np.ndarray((0,), dtype=np.uint8)


def _from_buffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """numpy's `_frombuffer` (protocol 5), for bytes carried in the payload only."""
    if not isinstance(buffer, (bytes, bytearray)):
        raise pickle.UnpicklingError("_frombuffer needs bytes from the payload")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)  # type: ignore[arg-type, call-overload]


def _latin1(text: object, encoding: object) -> bytes:
    """`_codecs.encode` as protocols 0-2 use it for raw bytes; other codecs can expand data without bound."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as str -> latin1")
    return text.encode("latin-1")


# What `pickle.dumps(ndarray)` refers to, across numpy 1.x (numpy.core) and 2.x (numpy._core), each bound to a
# version that can only build arrays from the payload's own bytes.
_ARRAY_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy.core.numeric", "_frombuffer"): _from_buffer,
    ("numpy._core.numeric", "_frombuffer"): _from_buffer,
    ("_codecs", "encode"): _latin1,
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return _ARRAY_GLOBALS[(module, name)]


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
