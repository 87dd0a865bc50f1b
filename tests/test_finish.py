"""The last pixel steps: film grain and colour grading (presets and .cube LUTs)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lib_multipass.engines.recording import RecordingEngine
from lib_multipass.errors import OptionsError
from lib_multipass.finish import PRESET_NAMES, film_grain, grade, grading_lut, read_cube
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import parse
from lib_multipass.runner import run

PHOTO = Image.fromarray(data.astronaut()).resize((256, 256))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), np.int16)


def write_cube(path, size: int, fn, header: str = "") -> str:
    steps = np.linspace(0, 1, size)
    rows = [fn(r, g, b) for b in steps for g in steps for r in steps]  # red changes fastest
    path.write_text(f"TITLE \"test\"\n{header}LUT_3D_SIZE {size}\n" + "\n".join(" ".join(f"{v:.6f}" for v in row)
                                                                              for row in rows) + "\n")
    return str(path)


def test_grain_is_the_same_for_the_same_seed_and_scales_with_strength():
    grey = Image.new("RGB", (128, 128), (128, 128, 128))
    one, again, other = film_grain(grey, 0.5, 7), film_grain(grey, 0.5, 7), film_grain(grey, 0.5, 8)
    assert np.array_equal(pixels(one), pixels(again)) and not np.array_equal(pixels(one), pixels(other))
    weak = (pixels(film_grain(grey, 0.25, 7)) - 128).std()
    strong = (pixels(one) - 128).std()
    assert 1.7 < strong / weak < 2.3  # twice the strength, twice the grain
    assert 9 < strong < 11  # 0.08 x 0.5 x 255 at middle grey
    assert (pixels(one)[..., 0] == pixels(one)[..., 1]).all()  # monochrome: the same in every channel
    assert np.array_equal(pixels(film_grain(grey, 0.0, 7)), pixels(grey))


def test_grain_spares_black_and_white_and_grows_with_the_image():
    split = np.zeros((64, 64, 3), np.uint8)
    split[:, 32:] = 255
    assert np.array_equal(pixels(film_grain(Image.fromarray(split), 1.0, 1)), split)

    def neighbour_correlation(size: int) -> float:
        noise = pixels(film_grain(Image.new("RGB", (size, size), (128,) * 3), 0.5, 3))[..., 0] - 128.0
        return float(np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1])

    assert neighbour_correlation(512) < 0.1 and neighbour_correlation(2048) > 0.5  # larger grains on larger images


def test_an_identity_cube_leaves_the_image_and_an_inverting_one_inverts(tmp_path):
    identity = write_cube(tmp_path / "id.cube", 17, lambda r, g, b: (r, g, b))
    assert np.abs(pixels(grade(PHOTO, identity)) - pixels(PHOTO)).max() <= 1
    invert = write_cube(tmp_path / "inv.cube", 17, lambda r, g, b: (1 - r, 1 - g, 1 - b))
    assert np.abs(pixels(grade(PHOTO, invert)) - (255 - pixels(PHOTO))).max() <= 1
    half = pixels(grade(PHOTO, invert, 0.5))
    assert np.abs(half - (pixels(PHOTO) + 255 - pixels(PHOTO)) / 2).max() <= 1  # strength blends
    in_255 = write_cube(tmp_path / "255.cube", 5, lambda r, g, b: (255 * r, 255 * g, 255 * b), "DOMAIN_MAX 255 255 255\n")
    assert np.abs(pixels(grade(PHOTO, in_255)) - pixels(PHOTO)).max() <= 2


@pytest.mark.parametrize("text, words", [
    ("LUT_1D_SIZE 4\n0 0 0\n", "a 1D LUT"),
    ("LUT_3D_SIZE 2\n0 0 0\nzero 1 1\n", "line 3"),
    ("LUT_3D_SIZE 2\n0 0 0\n1 1 1\n", "2 rows"),
])
def test_bad_cube_files_are_refused_with_what_is_wrong(tmp_path, text, words):
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(OptionsError, match=words):
        read_cube(path)
    with pytest.raises(OptionsError, match="cannot read"):
        read_cube(tmp_path / "missing.cube")
    with pytest.raises(OptionsError, match="Film Velvia, Film Portra, Ektar or a .cube"):
        grading_lut("Kodachrome")


def chroma(image: Image.Image) -> float:
    rgb = pixels(image).astype(np.float32)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


def test_the_film_looks_do_what_their_films_do():
    velvia, portra, ektar = (grade(PHOTO, name) for name in PRESET_NAMES)
    assert chroma(velvia) > 1.2 * chroma(PHOTO) and chroma(ektar) > 1.1 * chroma(PHOTO)
    assert chroma(portra) < chroma(PHOTO)
    black = Image.new("RGB", (8, 8))
    assert pixels(grade(black, "film portra")).min() >= 8  # lifted shadows
    assert pixels(grade(black, "Film Velvia")).max() == 0
    assert grade(PHOTO, "ektar").size == PHOTO.size


def test_the_runner_grades_and_grains_the_final_image_last():
    options = MultipassOptions.from_dict({"film_grain": 0.4, "color_grading": "Film Portra"})
    plan = make_plan(parse("a forest BREAK ohwx man"), options, Generation(seed=9, steps=2, width=64, height=64))
    engine = RecordingEngine({"person": np.ones((64, 64), np.float32)})
    result = run(plan, engine)
    assert list(result.images)[-1] == "finished"
    before = result.images["person_1"]
    assert np.array_equal(pixels(result.final), pixels(film_grain(grade(before, "Film Portra"), 0.4, 9)))
    assert np.array_equal(pixels(run(plan, RecordingEngine({"person": np.ones((64, 64), np.float32)})).final),
                          pixels(result.final))  # same seed, same grain
    assert "finished" not in run(plan, RecordingEngine(stop_after=1)).images  # an interrupted job is not finished


def test_a_cube_that_cannot_be_read_fails_before_any_pass(tmp_path):
    options = MultipassOptions.from_dict({"color_grading": str(tmp_path / "nowhere.cube")})
    plan = make_plan(parse("a forest BREAK man"), options, Generation(seed=1, steps=2, width=64, height=64))
    engine = RecordingEngine()
    with pytest.raises(OptionsError, match="nowhere.cube"):
        run(plan, engine)
    assert engine.requests == []


def test_super_resolution_comes_first_and_the_grain_is_sized_for_the_upscaled_image():
    options = MultipassOptions.from_dict({"super_resolution": 2, "film_grain": 0.3, "color_grading": "Ektar"})
    plan = make_plan(parse("a forest BREAK ohwx man"), options, Generation(seed=4, steps=2, width=64, height=64))
    result = run(plan, RecordingEngine({"person": np.ones((64, 64), np.float32)}))
    assert result.final.size == (128, 128)
    upscaled = result.images["person_1"].resize((128, 128), Image.Resampling.LANCZOS)
    assert np.array_equal(pixels(result.final), pixels(film_grain(grade(upscaled, "Ektar"), 0.3, 4)))


def test_the_standalone_engine_refuses_an_upscaler_it_does_not_have(tmp_path):
    from lib_multipass.errors import OptionsError as Refused
    from lib_multipass.standalone.cli import build_parser
    from lib_multipass.standalone.job import plan_from_args

    def plan(*flags: str):
        return plan_from_args(build_parser().parse_args(
            ["run", "--checkpoint", "m", "--out", str(tmp_path), "--prompt", "a BREAK b", *flags]))

    with pytest.raises(Refused, match="takes Lanczos, a known name .*RealESRGAN_x4plus.* or the path of upscaler"):
        plan("--super-resolution", "2", "--super-resolution-upscaler", "R-ESRGAN 4x+")
    with pytest.raises(Refused, match="`hires_upscaler`.*takes Lanczos or Latent, a known name"):
        plan("--hires-denoising-strength", "0.3", "--hires-upscaler", "4x-UltraSharp")
    assert plan("--hires-denoising-strength", "0.3", "--hires-upscaler", "latent")[1].harmonize is not None
    assert plan("--super-resolution", "2", "--super-resolution-upscaler", "RealESRGAN_x4plus")  # downloaded when used
