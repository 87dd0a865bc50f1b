"""Mask operations and the "only masked" crop/paste geometry (pure numpy)."""

import numpy as np
import pytest
from PIL import Image

from lib_multipass.errors import MultipassError
from lib_multipass.masks import masking
from lib_multipass.masks.crop import crop_box, mask_box, paste


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


def test_remove_specks_keeps_large_parts():
    mask = disc(radius=20)
    mask[2:4, 2:4] = True  # a 4 px speck
    cleaned = masking.remove_specks(mask, 0.001)  # 12 px at 100x120
    assert not cleaned[2:4, 2:4].any() and np.array_equal(cleaned, disc(radius=20))
    assert np.array_equal(masking.remove_specks(mask, 0), mask)


def test_fragments_of_one_subject_merge():
    body = disc(centre=(70, 60), radius=18)
    head = disc(centre=(25, 60), radius=10)  # far above the body, same column: stacked
    near = disc(centre=(70, 82), radius=3)  # a hand 1 px from the body
    other = disc(centre=(50, 110), radius=8)
    parts = masking.split_instances(body | head | near | other)
    assert len(parts) == 2
    assert parts[0][25, 60] and parts[0][70, 60] and parts[0][70, 82]
    assert parts[1][50, 110]


def test_side_by_side_subjects_stay_apart():
    left, right = disc(centre=(50, 30), radius=20), disc(centre=(50, 90), radius=20)
    parts = masking.split_instances(left | right)
    assert [np.array_equal(p, m) for p, m in zip(parts, (left, right))] == [True, True]


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "I;16", "I", "F", "CMYK"])
def test_user_mask_in_any_mode(tmp_path, mode):
    image = Image.new("L", (40, 30), 0)
    image.paste(255, (10, 5, 30, 25))
    image = image.convert(mode) if mode not in ("I;16", "I", "F") else Image.fromarray(
        (np.asarray(image) > 0).astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]) * 1000
    )
    path = tmp_path / ("m.tiff" if mode in ("I", "F", "CMYK") else "m.png")
    image.save(path)
    mask, _ = masking.load_mask_image(path, (40, 30))
    expected = np.zeros((30, 40), bool)
    expected[5:25, 10:30] = True
    assert np.array_equal(mask, expected)


def test_opaque_alpha_falls_back_to_brightness(tmp_path):
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 255))
    image.paste((255, 255, 255, 255), (0, 0, 10, 20))
    image.save(tmp_path / "m.png")
    mask, _ = masking.load_mask_image(tmp_path / "m.png", (20, 20))
    assert mask[:, :10].all() and not mask[:, 10:].any()


def test_percent_dilate_is_of_the_short_side():
    from lib_multipass.options import Length

    assert Length(-20, True).pixels(512) == -102 and Length(8).pixels(100) == 8
