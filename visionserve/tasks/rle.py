"""COCO run-length encoding of binary masks, in the compressed string form (`{"size": [h, w], "counts": str}`)
that pycocotools, supervision and the reference server use."""

from __future__ import annotations

import numpy as np


def _compress(counts: list[int]) -> str:
    """Each run as 5-bit groups, little end first, 6th bit = more follows, offset by 48 into printable ASCII;
    from the third run on, runs are stored as the difference to the run two before."""
    out = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            group = value & 0x1F
            value >>= 5
            more = value != -1 if group & 0x10 else value != 0
            out.append(chr(group + (0x20 if more else 0) + 48))
    return "".join(out)


def rle_encode(mask: np.ndarray) -> dict[str, object]:
    """A 2-D boolean mask → COCO compressed RLE (column-major runs, starting with a run of zeros)."""
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if not flat.size:
        return {"size": [height, width], "counts": ""}
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"size": [height, width], "counts": _compress(counts)}


def rle_encode_patch(patch: np.ndarray, left: int, top: int, height: int, width: int) -> dict[str, object]:
    """The RLE of a `height` x `width` mask that is empty but for `patch` at (`left`, `top`), in time and memory
    proportional to the patch, never to the image. Each patch column is framed by a false pixel above and below,
    so every run boundary maps straight to its index in the image's column-major order (where a patch as tall as the
image wraps from one column into the next, the two frame boundaries meet at one index and cancel)."""
    rows, columns = patch.shape
    framed = np.zeros((rows + 2, columns), dtype=bool)
    framed[1:-1] = patch
    edges = np.flatnonzero(np.diff(framed.ravel(order="F"))) + 1
    column, row = np.divmod(edges, rows + 2)
    in_image, meetings = np.unique((left + column) * height + top + row - 1, return_counts=True)
    in_image = in_image[(meetings % 2 == 1) & (in_image < height * width)]  # the image's end is no boundary
    counts = np.diff(np.concatenate([[0], in_image, [height * width]])).tolist()
    return {"size": [height, width], "counts": _compress(counts)}
