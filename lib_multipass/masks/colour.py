"""Colour match at the seam: the in-painted patch's colour cast corrected near the mask's
edge only, so the feathered paste shows no halo and the subject's own colours stay.

A LoRA trained on other light, or the sampler's drift, gives the regenerated region a cast
(warmer, darker) that the feathered edge turns into a visible seam. The cast is measured
where the base and the patch show the same thing, just inside the mask's edge, on blurred
copies (texture and small changes do not count), and taken out of the patch in a band that
fades from the edge inwards; deeper in, the patch is left as it is (no global shift). A
change that is not a cast (new clothes of another colour: the difference varies from place
to place) is left alone, and the correction is bounded.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..images import Box

MAX_SHIFT = np.array([8.0, 6.0, 6.0], np.float32)  # L, a, b: the largest cast taken out
MIN_PIXELS = 32


def seam_width(on: bool, blur: int) -> int:
    """How far inside the mask the colour match reaches: past the feather, at least 8 px."""
    return max(8, 2 * blur) if on else 0


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def band_of(mask: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(inside distance of each mask pixel to the outside, the inner band mask)."""
    inside = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return inside, mask & (inside <= width)


def seam_cast(base: np.ndarray, patch: np.ndarray, mask: np.ndarray, width: int) -> np.ndarray | None:
    """The patch's colour cast against the base in the inner band (Lab), or None when what
    changed there is not one cast."""
    _, band = band_of(mask, width)
    if np.count_nonzero(band) < MIN_PIXELS:
        return None
    sigma = max(1.0, width / 2)
    smooth = [cv2.GaussianBlur(_lab(x), (0, 0), sigma) for x in (base, patch)]
    difference = (smooth[0] - smooth[1])[band]
    cast = difference.mean(axis=0)
    spread = difference.std(axis=0)
    if np.any(spread > np.abs(cast) + 4.0):  # varies from place to place: content changed, not light
        return None
    return np.clip(cast, -MAX_SHIFT, MAX_SHIFT)


def match_seam(base: np.ndarray, patch: np.ndarray, mask: np.ndarray, width: int) -> np.ndarray:
    """`patch` (H, W, 3 uint8, the same box as `base`) with its cast taken out near the edge
    of `mask` (bool, that box): fully at the edge and outside it, fading to nothing `width`
    px inside."""
    cast = seam_cast(base, patch, mask, width) if width > 0 else None
    if cast is None:
        return patch
    inside, _ = band_of(mask, width)
    weight = np.where(mask, np.clip(1.0 - (inside - 1.0) / width, 0.0, 1.0), 1.0).astype(np.float32)
    lab = _lab(patch) + weight[..., None] * cast
    rgb = np.rint(np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0, 1) * 255).astype(np.uint8)
    return np.where(weight[..., None] > 0, rgb, patch)  # untouched pixels stay bit-identical


def matched(base: np.ndarray, patch: np.ndarray, box: Box, mask: np.ndarray, seam: int) -> np.ndarray:
    """An engine's patch for `box` of `base` (the whole image's mask), colour-matched."""
    x0, y0, x1, y1 = box
    return match_seam(base[y0:y1, x0:x1], patch, mask[y0:y1, x0:x1], seam)


def seam(image: np.ndarray, base: np.ndarray, mask: np.ndarray, width: int = 3) -> float:
    """The colour step a paste added across the mask's edge (Lab units, mean of |dL|, |da|,
    |db|): the step between the rings `width` px inside and outside, against the base's own
    step there. 0: the edge looks as it did in the base."""
    _, inner = band_of(mask, width)
    outside = cv2.distanceTransform(np.pad(~mask, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    outer = ~mask & (outside <= width)
    if not inner.any() or not outer.any():
        return 0.0
    steps = [lab[inner].mean(axis=0) - lab[outer].mean(axis=0) for lab in (_lab(image), _lab(base))]
    return float(np.abs(steps[0] - steps[1]).mean())
