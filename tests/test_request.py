"""Astria-style requests, aspect ratios and several images from one `run`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_cli import run_args

from lib_multipass.errors import MultipassError, OptionsError
from lib_multipass.plan import size_for
from lib_multipass.standalone.cli import build_parser, main
from lib_multipass.standalone.job import plan_from_args


@pytest.mark.parametrize("ar, native, size", [
    ("1:1", 512, (512, 512)), ("16:9", 512, (680, 384)), ("9:16", 512, (384, 680)), ("portrait", 512, (416, 624)),
    ("landscape", 768, (944, 624)), ("21:9", 1024, (1536, 640)), ("16:9", 1024, (1344, 768)), ("4:5", 1024, (896, 1152)),
])
def test_aspect_ratios_at_the_models_native_area(ar, native, size):
    width, height = size_for(ar, native)
    assert (width, height) == size
    assert abs(width * height / native**2 - 1) < 0.07  # the model's own area (21:9 on 64 px buckets: -6 %)
    assert width % (64 if native >= 1024 else 8) == 0 and height % (64 if native >= 1024 else 8) == 0


@pytest.mark.parametrize("ar", ["wide", "16:0", "1:9", "16-9"])
def test_an_aspect_ratio_it_cannot_read_names_what_works(ar):
    with pytest.raises(OptionsError, match="W:H like 16:9"):
        size_for(ar)


def plan_of(tmp_path, *argv, request=None):
    extra = []
    if request is not None:
        (tmp_path / "request.json").write_text(json.dumps(request))
        extra = ["--request", str(tmp_path / "request.json")]
    args = build_parser().parse_args(["run", "--checkpoint", "x", "--out", str(tmp_path / "o"), *argv, *extra])
    return args, plan_from_args(args)[1]


def test_an_astria_request_maps_onto_the_job(tmp_path):
    request = {"prompt": {"text": "a forest BREAK ohwx man", "negative_prompt": "ugly", "num_images": 2, "seed": 5,
                          "steps": 12, "cfg_scale": 5, "ar": "16:9", "scheduler": "euler_a", "inpaint_faces": True,
                          "film_grain": True, "color_grading": "Film Portra", "use_lpw": False, "super_resolution": True,
                          "callback": "https://example.com/hook"}}
    args, plan = plan_of(tmp_path, request=request)
    assert (plan.generation.seed, plan.generation.steps, plan.generation.cfg_scale) == (5, 12, 5)
    assert (plan.generation.width, plan.generation.height) == (680, 384) and plan.generation.sampler == "euler_a"
    assert args.num_images == 2 and args.negative == "ugly"
    options = plan.options
    assert options.inpaint_faces and options.film_grain == 0.3 and options.color_grading == "Film Portra"
    assert options.super_resolution == 2  # Astria's on/off: 2x (Lanczos here)
    assert not options.use_lpw
    args, plan = plan_of(tmp_path, "--seed", "9", "--width", "512", "--height", "512",
                         request={"text": "a forest", "seed": 5, "w": 768, "h": 768})
    assert plan.generation.seed == 9 and plan.generation.width == 512  # the command line wins


def test_hires_fix_turns_the_harmonizing_pass_on(tmp_path):
    _, plan = plan_of(tmp_path, request={"text": "a forest BREAK ohwx man", "hires_fix": True, "w": 256, "h": 256})
    assert plan.harmonize is not None and plan.harmonize.denoise == 0.4 and plan.harmonize.width == 512
    _, plan = plan_of(tmp_path, request={"text": "a forest BREAK ohwx man", "hires_fix": True,
                                         "hires_denoising_strength": 0.25})
    assert plan.harmonize.denoise == 0.25 and plan.options.hires_scale == 2
    _, plan = plan_of(tmp_path, request={"text": "a forest BREAK ohwx man", "hires_fix": False})
    assert plan.harmonize is None


@pytest.mark.parametrize("request_, words", [
    ({"text": "a", "prompt_expansion": True}, "needs a language model"),
    ({"text": "a", "face_swap": True}, "--face-swap-images"),
    ({"text": "a", "input_image_url": "https://x/y.png"}, "reads no URLs"),
    ({"text": "a", "mask_image": "https://x/y.png"}, "download the image"),
    ({"text": "a", "tune": 3}, "`tune` is not one this engine knows; known fields: "),
    ({"negative_prompt": "x"}, "give the prompt"),
    ({"text": "a", "num_images": 9}, "from 1 to 8"),
    ({"text": "a", "w": 512}, "both --width and --height"),
])
def test_requests_this_engine_cannot_honour_are_refused_saying_why(tmp_path, request_, words):
    with pytest.raises(MultipassError, match=words):
        plan_of(tmp_path, request=request_)


def test_several_images_each_with_its_own_seed_and_folder(tiny, tmp_path):
    out = tmp_path / "out"
    (out / "image_5").mkdir(parents=True)
    (out / "image_5" / "final.png").write_bytes(b"old")
    code = main(run_args(tiny, out, "a forest BREAK ohwx man --mask_dilate 0", "--num-images", "2",
                         "--film-grain", "0.2"))
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["image_1", "image_2"]  # an older run's image_5 cleared
    first, second = (np.asarray(Image.open(out / f"image_{k}" / "final.png")) for k in (1, 2))
    assert not np.array_equal(first, second)
    seeds = [json.loads((out / f"image_{k}" / "plan.json").read_text())["generation"]["seed"] for k in (1, 2)]
    assert seeds == [3, 4]
    assert (out / "image_1" / "finished.png").exists()
