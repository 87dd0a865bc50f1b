"""Colour match at the seam: a subject in-painted with a colour cast is pasted without a
colour step at its edge, its interior keeps its own colours, the outside stays exact."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image
from skimage import data

from lib_multipass.masks.colour import match_seam, seam
from lib_multipass.masks.crop import paste
from lib_multipass.masks.masking import feather

SIZE = 256


def scene() -> tuple[np.ndarray, np.ndarray]:
    base = np.asarray(Image.fromarray(data.astronaut()).resize((SIZE, SIZE)))
    mask = np.zeros((SIZE, SIZE), bool)
    cv2.ellipse(mask.view(np.uint8), (128, 140), (60, 90), 0, 0, 360, 1, -1)
    return base, mask


def with_cast(image: np.ndarray, shift=(-6.0, 5.0, 6.0), seed: int = 0) -> np.ndarray:
    """The image as a pass might give it back: warmer and darker, with fresh noise."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB) + np.asarray(shift, np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255 + np.random.default_rng(seed).normal(0, 2, image.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def test_a_cast_subject_is_pasted_without_a_seam_and_keeps_its_own_colours_inside():
    base, mask = scene()
    patch = with_cast(base)
    alpha = feather(mask, 4)
    box = (0, 0, SIZE, SIZE)
    plain = paste(base, patch, box, alpha)
    matched = paste(base, match_seam(base, patch, mask, 8), box, alpha)
    assert seam(plain, base, mask) > 2.5  # the cast shows as a step at the edge (half of it through the feather)
    assert seam(matched, base, mask) < 0.5  # and is gone
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3) > 10
    assert np.array_equal(matched[inside], plain[inside])  # deep inside: the patch's own colours
    assert np.array_equal(matched[alpha == 0], base[alpha == 0])  # outside: the base, exactly


def test_new_content_is_not_taken_for_a_cast():
    """Other clothes, another face: the difference varies from place to place; nothing moves."""
    base, mask = scene()
    other = np.asarray(Image.fromarray(data.coffee()).resize((SIZE, SIZE)))
    patch = np.where(mask[..., None], other, base)
    assert np.array_equal(match_seam(base, patch, mask, 8), patch)


def test_a_cast_is_bounded_and_a_zero_width_is_off():
    base, mask = scene()
    strong = with_cast(base, (-30.0, 20.0, 20.0))
    fixed = match_seam(base, strong, mask, 8)
    edge = mask & (cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3) <= 2)
    lab = [cv2.cvtColor(x.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)[edge].mean(axis=0) for x in (strong, fixed)]
    assert 6 < lab[1][0] - lab[0][0] <= 8.5  # at most 8 L units taken out
    assert np.array_equal(match_seam(base, strong, mask, 0), strong)
