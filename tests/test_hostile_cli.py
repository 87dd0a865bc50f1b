"""Hostile and extreme input through the CLI: refused before any model loads (exit 2, one
message naming the field and the fix), or run correctly; outputs list only what was written."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from lib_multipass.standalone.cli import main
from lib_multipass.tiny_models import LORA_NAME

PROMPT = f"a forest BREAK ohwx man <lora:{LORA_NAME}:1>"


def run_args(tiny, out, prompt=PROMPT, *extra, lora_dir=None):
    return ["run", "--checkpoint", str(tiny.checkpoint), "--lora-dir", str(lora_dir or tiny.lora_dir),
            "--segmenter", str(tiny.segmenter), "--prompt", prompt, "--seed", "3", "--steps", "4", "--width", "64",
            "--height", "64", "--sampler", "euler", "--out", str(out), "--no-mask-person-check", *extra]  # noise: no body


REFUSED = [
    ((), {"prompt": PROMPT, "extra": ("--width", "100000")}, "`width` must be a multiple of 8 from 64 to 4096"),
    ((), {"prompt": PROMPT + " --mask_dilate 99999"}, "mask_dilate"),
    ((), {"prompt": "a BREAK man <lora:x:1e308>"}, "weight must be a number from -10 to 10"),
    ((), {"prompt": "a BREAK b --mask_prompt person--mask_dilate 4"}, "stuck to the word before it"),
    ((), {"prompt": PROMPT, "extra": ("--controlnet", "pose")}, "nothing to guide it"),
    ((), {"prompt": "a BREAK a car --mask_prompt car", "extra": ("--segmenter", "selfie")}, "people only"),
    ((), {"prompt": PROMPT, "extra": ("--fast", "--device", "cpu")}, "--fast needs a CUDA device"),
]


@pytest.mark.parametrize("_, case, words", REFUSED)
def test_refused_before_any_model_loads(tiny, tmp_path, capsys, _, case, words):
    args = run_args(tiny, tmp_path / "out", case["prompt"], *case.get("extra", ()))
    if "--segmenter" in case.get("extra", ()):  # the last --segmenter wins
        args = args[:args.index("--segmenter")] + args[args.index("--segmenter") + 2:]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and "loading" not in err
    assert not (tmp_path / "out" / "base.png").exists()


def test_output_folder_that_is_a_file_is_refused(tiny, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("mine")
    assert main(run_args(tiny, target)) == 2
    assert "is a file" in capsys.readouterr().err and target.read_text() == "mine"


def test_a_truncated_lora_is_refused_before_the_checkpoint_loads(tiny, tmp_path, capsys):
    loras = tmp_path / "loras"
    shutil.copytree(tiny.lora_dir, loras)
    file = loras / f"{LORA_NAME}.safetensors"
    file.write_bytes(file.read_bytes()[:-100])
    assert main(run_args(tiny, tmp_path / "out", lora_dir=loras)) == 2
    err = capsys.readouterr().err
    assert "cut short" in err and "loading" not in err


def test_a_reused_output_folder_lists_only_this_jobs_files(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "person_2.png").write_bytes(b"old")  # from an earlier job with two persons
    (out / "notes.txt").write_text("the user's own file")
    assert main(run_args(tiny, out, PROMPT + " --mask_threshold 0")) == 0
    err = capsys.readouterr().err
    assert not (out / "person_2.png").exists() and (out / "notes.txt").exists()
    wrote = err.split("wrote ")[-1]
    assert "person_1.png" in wrote and "person_2" not in wrote and "notes.txt" not in wrote


@pytest.mark.parametrize("steps, denoise", [(1, 0.75), (20, 0.04)])
def test_fewer_than_one_effective_step_still_runs_one(tiny, tmp_path, steps, denoise):
    out = tmp_path / "out"
    args = run_args(tiny, out, PROMPT + f" --mask_threshold 0 --denoising_strength {denoise}")
    args[args.index("--steps") + 1] = str(steps)
    assert main(args) == 0 and (out / "person_1.png").exists()


def test_denoise_zero_keeps_the_image(tiny, tmp_path):
    out = tmp_path / "out"
    assert main(run_args(tiny, out, PROMPT + " --mask_threshold 0 --denoising_strength 0")) == 0
    report = json.loads((out / "plan.json").read_text())
    assert any("denoise 0" in w for w in report["warnings"]) and not (out / "person_1.png").exists()
    assert list(Image.open(out / "final.png").getdata()) == list(Image.open(out / "base.png").getdata())


@pytest.mark.parametrize("persons", ["0", "-1"])
def test_mask_command_refuses_a_bad_person_count(tmp_path, capsys, persons):
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    code = main(["mask", str(tmp_path / "a.png"), "--prompt", "person", "--persons", persons,
                 "--segmenter", "selfie", "--out", str(tmp_path / "m")])
    assert code == 2 and "--persons must be from 1" in capsys.readouterr().err


def test_a_missing_controlnet_model_is_refused_before_the_checkpoint_loads(tiny, tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "hint.png")
    args = run_args(tiny, tmp_path / "out", PROMPT, "--controlnet", "pose", "--control-image",
                    str(tmp_path / "hint.png"), "--controlnet-model", str(tmp_path / "nope.safetensors"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "loading" not in err


def test_bare_break_segments_are_said(tiny, tmp_path):
    out = tmp_path / "out"
    assert main(run_args(tiny, out, "a forest BREAK  --mask_threshold 0")) == 0
    assert any("empty person prompt" in w for w in json.loads((out / "plan.json").read_text())["warnings"])


def test_mask_command_says_when_fewer_subjects_than_persons(tmp_path, capsys):
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    code = main(["mask", str(tmp_path / "a.png"), "--prompt", "person", "--persons", "5",
                 "--segmenter", "selfie", "--out", str(tmp_path / "m")])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and "for 5 persons" in report["warning"]


def test_interrupt_in_the_person_pass_exits_130_and_names_the_partial_image(tiny, tmp_path, monkeypatch):
    from lib_multipass.engines.diffusers import DiffusersEngine

    original = DiffusersEngine.inpaint

    def stopped_midway(self, request):  # Ctrl+C while the person pass runs
        self.interrupt()
        return original(self, request)

    monkeypatch.setattr(DiffusersEngine, "inpaint", stopped_midway)
    out = tmp_path / "out"
    assert main(run_args(tiny, out, PROMPT + " --mask_threshold 0")) == 130
    report = json.loads((out / "plan.json").read_text())
    assert report["interrupted"] == "person_1" and (out / "person_1-interrupted.png").exists()
    assert not (out / "person_1.png").exists()
    assert list(Image.open(out / "final.png").getdata()) == list(Image.open(out / "base.png").getdata())
    assert "Multipass interrupted: person_1" in (out / "infotext.txt").read_text()


def test_mask_report_keeps_every_warning():
    import numpy as np

    from lib_multipass.options import MultipassOptions
    from lib_multipass.standalone.mask import compute_mask

    class OneBlob:
        def probabilities(self, image, terms):
            prob = np.zeros(image.size[::-1], np.float32)
            prob[10:20, 10:20] = 0.9
            return prob

    options = MultipassOptions.from_dict({"mask_dilate": 0, "mask_blur": 0, "mask_min_area": 0.5})
    _, _, report = compute_mask(Image.new("RGB", (64, 64)), options, OneBlob(), persons=3)
    assert "for 3 persons" in report["warning"] and "below mask_min_area" in report["warning"]
