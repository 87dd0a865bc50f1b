"""Segmenters: square views map back exactly; CLIPSeg wiring on a tiny random model."""

import numpy as np
import pytest
from PIL import Image

from lib_multipass.errors import ModelNotFoundError, MultipassError
from lib_multipass.masks.segmenters import (
    SMALL_VIEW,
    ClipSegSegmenter,
    FallbackSegmenter,
    SelfieSegmenter,
    both_models,
    merge_views,
    view_pixels,
    views_of,
)


@pytest.mark.parametrize("size", [(512, 512), (640, 480), (480, 640), (1024, 512), (300, 1000), (97, 61)])
def test_views_cover_the_image_and_map_back_exactly(size):
    width, height = size
    views = views_of(width, height)
    covered = np.zeros((height, width), bool)
    for x, y, w, h in views:
        assert x >= 0 and y >= 0 and x + w <= width and y + h <= height  # never past the edge: no padding
        assert max(w, h) <= 1.5 * min(w, h)
        covered[y : y + h, x : x + w] = True
    assert covered.all()
    # an identity "segmenter" (the view's own pixels) must give back the image
    ramp = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))
    pixels = np.repeat(ramp[..., None], 3, axis=2)
    maps = [view_pixels(pixels, v)[..., 0] for v in views]
    assert np.allclose(merge_views(maps, views, size), ramp, atol=1e-6)


def test_long_images_are_tiled_and_others_seen_whole():
    assert views_of(768, 512) == [(0, 0, 768, 512)]
    tiles = views_of(1024, 512)
    assert len(tiles) == 3 and tiles[0] == (0, 0, 512, 512) and tiles[-1] == (512, 0, 512, 512)


def test_clipseg_wiring_on_a_tiny_model(tiny):
    """A tiny random CLIPSeg: a map at the image size, deterministic, loaded once, freed on request."""
    segmenter = ClipSegSegmenter(str(tiny.segmenter))
    image = Image.new("RGB", (160, 96), (128, 128, 128))
    prob = segmenter.probabilities(image, ["person", "hat"])
    assert prob.shape == (96, 160) and prob.dtype == np.float32
    assert 0 <= prob.min() and prob.max() <= 1
    assert np.array_equal(prob, segmenter.probabilities(image, ["person", "hat"]))  # loaded once, deterministic
    model = segmenter._model
    segmenter.probabilities(image, ["person"])
    assert segmenter._model is model
    segmenter.unload()
    assert segmenter._model is None


def test_missing_clipseg_weights_error_and_person_fallback(tmp_path):
    missing = ClipSegSegmenter(str(tmp_path / "none"))
    with pytest.raises(ModelNotFoundError, match="CLIPSeg weights not found"):
        missing.probabilities(Image.new("RGB", (64, 64)), ["person"])

    class Offline:
        def prepare(self, terms):
            pass

        def probabilities(self, image, terms):
            return np.full(image.size[::-1], 0.7, np.float32)

    fallback = FallbackSegmenter(missing, Offline())
    assert fallback.probabilities(Image.new("RGB", (64, 32)), ["person"]).shape == (32, 64)
    with pytest.raises(ModelNotFoundError):
        FallbackSegmenter(ClipSegSegmenter(str(tmp_path / "none")), Offline()).probabilities(
            Image.new("RGB", (64, 64)), ["hat"])


def test_selfie_segmenter_refuses_other_terms():
    with pytest.raises(MultipassError, match="people only"):
        SelfieSegmenter().probabilities(Image.new("RGB", (64, 64)), ["hat"])


def test_the_selfie_models_total_disagreement_counts_as_no_person_in_small_views_only():
    """The general model marks whole upscaled small crops as person where the landscape model
    sees none (the floods of bench_masks); in a view the models see at their own size or larger,
    the mean keeps what only one of them finds (a dark suit)."""
    general = np.array([[1.0, 0.9, 0.2]], np.float32)
    landscape = np.array([[0.0, 0.7, 0.0]], np.float32)
    small, large = (0, 0, 200, 120), (0, 0, SMALL_VIEW, 180)
    assert np.allclose(both_models([general, landscape], small), [[0.0, 0.8, 0.1]])
    assert np.allclose(both_models([general, landscape], large), [[0.5, 0.8, 0.1]])
