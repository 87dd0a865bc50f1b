""""Only masked" in-painting geometry: the crop around a mask and the paste back.

The crop is the mask's bounding box plus padding, widened to the pass's aspect ratio so
scaling it to the pass size does not stretch it (as the WebUI's `inpaint_full_res`).
Pasting blends with the feathered alpha; where alpha is 0 the base pixels are kept
bit-identical.
"""

from __future__ import annotations

import numpy as np

from ..images import Box


def mask_box(mask: np.ndarray) -> Box | None:
    """Bounding box of the non-zero pixels, or None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def crop_box(mask: np.ndarray, padding: int, target: tuple[int, int]) -> Box | None:
    """The region to in-paint: box + padding, grown to `target`'s (w, h) aspect, inside the image."""
    box = mask_box(mask)
    if box is None:
        return None
    height, width = mask.shape
    x0, y0, x1, y1 = box[0] - padding, box[1] - padding, box[2] + padding, box[3] + padding
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    want = target[0] / target[1]
    w, h = x1 - x0, y1 - y0
    if w / h < want:
        x0, x1 = _grow(x0, x1, round(h * want), width)
    else:
        y0, y1 = _grow(y0, y1, round(w / want), height)
    return x0, y0, x1, y1


def _grow(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """Grow [lo, hi) to `size` around its centre, shifted to stay in [0, limit)."""
    size = min(size, limit)
    lo = lo - (size - (hi - lo)) // 2
    lo = min(max(lo, 0), limit - size)
    return lo, lo + size


def paste(base: np.ndarray, patch: np.ndarray, box: Box, alpha: np.ndarray) -> np.ndarray:
    """`base` (H, W, 3 uint8) with `patch` (the box's size) blended in by `alpha` (H, W)."""
    x0, y0, x1, y1 = box
    out = base.copy()
    a = alpha[y0:y1, x0:x1, None].astype(np.float32)
    region = base[y0:y1, x0:x1].astype(np.float32)
    blended = np.rint(region * (1.0 - a) + patch.astype(np.float32) * a)
    out[y0:y1, x0:x1] = np.where(a > 0, np.clip(blended, 0, 255), region).astype(np.uint8)
    return out
