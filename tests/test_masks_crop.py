"""Mask operations and the "only masked" crop/paste geometry (pure numpy)."""

import numpy as np
import pytest
from PIL import Image

from lib_multipass import masking
from lib_multipass.crop import crop_box, mask_box, paste
from lib_multipass.errors import MultipassError


def disc(shape=(100, 120), centre=(50, 60), radius=20):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_dilate_grows_and_erode_shrinks_by_radius():
    mask = disc(radius=20)
    grown, shrunk = masking.dilate(mask, 5), masking.dilate(mask, -5)
    assert np.array_equal(grown, disc(radius=25)) or abs(grown.sum() - disc(radius=25).sum()) < 0.03 * grown.sum()
    assert abs(shrunk.sum() - disc(radius=15).sum()) < 0.05 * shrunk.sum()
    assert shrunk.sum() < mask.sum() < grown.sum()
    assert (grown >= mask).all() and (shrunk <= mask).all()


def test_erode_shrinks_at_the_image_border_too():
    mask = np.ones((40, 40), bool)
    assert not masking.dilate(mask, -3)[0].any()


def test_invert_twice_is_identity_and_threshold():
    mask = disc()
    assert np.array_equal(masking.invert(masking.invert(mask)), mask)
    prob = np.linspace(0, 1, 11, dtype=np.float32)
    assert masking.threshold(prob, 0.5).sum() == 6


def test_feather_keeps_core_and_reaches_only_blur_pixels():
    mask = disc(radius=20)
    alpha = masking.feather(mask, 6)
    assert alpha.dtype == np.float32 and alpha.min() >= 0 and alpha.max() <= 1
    # the kernel is a (2*6+1)^2 square: it reaches 6 px along axes, 6*sqrt(2) < 9 px diagonally
    assert alpha[masking.dilate(mask, -9)] == pytest.approx(1.0, abs=1e-6)
    assert (alpha[~masking.dilate(mask, 9)] == 0).all()
    assert (alpha[~masking.dilate(mask, 5)] > 0).any()
    assert np.array_equal(masking.feather(mask, 0), mask.astype(np.float32))


def test_instances_left_to_right():
    mask = disc(centre=(50, 95), radius=10) | disc(centre=(50, 20), radius=10) | disc(centre=(20, 60), radius=5)
    parts = masking.split_instances(mask)
    lefts = [mask_box(p)[0] for p in parts]
    assert lefts == sorted(lefts) and len(parts) == 3


def test_subtract_negative():
    prob = np.full((4, 4), 0.9, np.float32)
    negative = np.zeros_like(prob)
    negative[:2] = 0.8
    assert masking.threshold(masking.subtract(prob, negative), 0.5).sum() == 8


def test_user_mask_alpha_luminance_and_resize(tmp_path):
    rgba = Image.new("RGBA", (50, 40), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (10, 10, 30, 30))
    rgba.save(tmp_path / "a.png")
    mask, notes = masking.load_mask_image(tmp_path / "a.png", (50, 40))
    assert mask.sum() == 400 and not notes
    Image.new("L", (100, 80), 255).save(tmp_path / "l.jpg")
    mask, notes = masking.load_mask_image(tmp_path / "l.jpg", (50, 40))
    assert mask.all() and "resized" in notes[0]
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(MultipassError, match="cannot be read"):
        masking.load_mask_image(tmp_path / "bad.png", (50, 40))
    with pytest.raises(MultipassError, match="does not exist"):
        masking.load_mask_image(tmp_path / "none.png", (50, 40))


def test_crop_box_padding_and_aspect():
    mask = np.zeros((200, 300), bool)
    mask[80:100, 140:150] = True
    box = crop_box(mask, 10, (64, 64))
    x0, y0, x1, y1 = box
    assert x1 - x0 == y1 - y0 == 40
    assert x0 <= 130 and x1 >= 160 and y0 <= 70 and y1 >= 110
    wide = crop_box(mask, 0, (128, 64))
    assert (wide[2] - wide[0]) == 2 * (wide[3] - wide[1])
    edge = np.zeros((200, 300), bool)
    edge[0:5, 0:5] = True
    x0, y0, x1, y1 = crop_box(edge, 32, (64, 64))
    assert x0 == 0 and y0 == 0 and x1 - x0 == y1 - y0
    assert crop_box(np.zeros((10, 10), bool), 4, (8, 8)) is None


def test_paste_keeps_pixels_where_alpha_is_zero():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:50] = True
    alpha = masking.feather(mask, 4)
    box = crop_box(alpha > 0, 8, (64, 64))
    patch = np.full((box[3] - box[1], box[2] - box[0], 3), 7, np.uint8)
    out = paste(base, patch, box, alpha)
    assert np.array_equal(out[alpha == 0], base[alpha == 0])
    assert (out[alpha == 1] == 7).all()
