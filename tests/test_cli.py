"""`python -m lib_multipass`: parse --json, run's files and exit codes, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib_multipass.standalone.cli import main
from lib_multipass.standalone.demo import DEMO_PROMPT
from lib_multipass.tiny_models import LORA_NAME

ROOT = Path(__file__).resolve().parents[1]


def test_parse_json_shape(capsys):
    prompt = "scene <lora:s:0.5> BREAK photo BREAK man <lora:a> BREAK woman <lora:b:0.7> --mask_dilate 8"
    assert main(["parse", "--json", prompt, "--negative", "ugly"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["segments"] == {"base": "scene", "common": "photo", "persons": ["man", "woman"]}
    assert data["flags"] == {"mask_dilate": 8}
    assert data["loras"] == [
        {"name": "s", "weight": 0.5, "segment": "base"},
        {"name": "a", "weight": 1.0, "segment": "person_1"},
        {"name": "b", "weight": 0.7, "segment": "person_2"},
    ]
    kinds = [(p["kind"], p["index"], p["prompt"], p["negative"]) for p in data["passes"]]
    assert kinds == [("base", 0, "scene, photo", "ugly"), ("person", 1, "man, photo", "ugly"),
                     ("person", 2, "woman, photo", "ugly")]
    assert data["passes"][0]["loras"] == [] and data["passes"][2]["loras"] == [{"name": "b", "weight": 0.7}]


def test_bad_prompt_exits_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "lib_multipass", "parse", "--json", "man --mask_threshold 7"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--mask_threshold" in proc.stderr and "at character 21" in proc.stderr and "Traceback" not in proc.stderr


def test_malformed_prompt_fails_before_any_model_is_loaded(tmp_path, capsys):
    code = main(["run", "--checkpoint", str(tmp_path / "does-not-exist.safetensors"), "--prompt", "a BREAK b --bogus 1",
                 "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown flag --bogus" in err and "loading" not in err
    assert not (tmp_path / "out").exists()


def test_missing_lora_fails_before_the_checkpoint_loads(tmp_path, tiny, capsys):
    code = main(["run", "--checkpoint", "nowhere.safetensors", "--lora-dir", str(tiny.lora_dir),
                 "--prompt", "a BREAK b <lora:ghost:1>", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "'ghost' not found" in err and LORA_NAME in err and "loading" not in err


def run_args(tiny, out, prompt, *extra):
    return ["run", "--checkpoint", str(tiny.checkpoint), "--lora-dir", str(tiny.lora_dir), "--segmenter",
            str(tiny.segmenter), "--prompt", prompt, "--seed", "3", "--steps", "4", "--width", "64", "--height", "64",
            "--sampler", "euler", "--out", str(out), "--no-mask-person-check", *extra]  # random images: no body


def test_run_writes_every_file(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    prompt = f"a forest BREAK photo BREAK ohwx man <lora:{LORA_NAME}:1> --mask_threshold 0.6 --mask_dilate 0"
    code = main(run_args(tiny, out, prompt, "--options", '{"mask_min_area": 0}'))
    assert code == 0
    err = capsys.readouterr().err  # progress, from the runner's logger, in order
    lines = [line for line in err.splitlines() if line.startswith(("[", "loading", "wrote"))]
    assert lines[0].startswith("loading") and lines[1].startswith("[1/2] base pass:")
    assert lines[-2].startswith("[2/2] person_1 pass done") and lines[-1].startswith("wrote base.png")
    assert sorted(p.name for p in out.iterdir()) == [
        "base.png", "final.png", "infotext.txt", "mask.png", "person_1.png", "plan.json"]
    mask = np.asarray(Image.open(out / "mask.png"))
    assert mask.shape == (64, 64)
    base, final = np.asarray(Image.open(out / "base.png")), np.asarray(Image.open(out / "final.png"))
    assert (mask > 0).any() and np.array_equal(base[mask == 0], final[mask == 0])
    text = (out / "infotext.txt").read_text()
    assert text.startswith(prompt + "\n")  # the user's prompt, as written
    assert "Steps: 4, Sampler: Euler, CFG scale: 7, Seed: 3, Size: 64x64" in text
    assert "Multipass mask threshold: 0.6" in text
    assert Image.open(out / "final.png").info["parameters"] == text.rstrip("\n")
    plan = json.loads((out / "plan.json").read_text())
    assert [p["kind"] for p in plan["passes"]] == ["base", "person"] and plan["error"] is None


def test_a_segmenter_that_cannot_do_the_mask_prompt_fails_before_any_pass(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(run_args(tiny, out, "a forest BREAK a hat --mask_prompt hat", "--segmenter", str(tmp_path / "no-segmenter")))
    err = capsys.readouterr().err
    assert code == 2 and not (out / "base.png").exists()
    assert "CLIPSeg weights not found" in err and "Traceback" not in err


def test_failure_after_base_still_writes_base(tiny, tmp_path, capsys, monkeypatch):
    from lib_multipass.engines.diffusers import DiffusersEngine

    def out_of_memory(self, request):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(DiffusersEngine, "inpaint", out_of_memory)
    out = tmp_path / "out"
    code = main(run_args(tiny, out, "a forest BREAK a man --mask_prompt person --mask_threshold 0"))
    err = capsys.readouterr().err
    assert code == 1 and (out / "base.png").exists() and (out / "final.png").exists()
    assert "out of memory" in err and "Traceback" not in err
    assert "Multipass warnings" in (out / "infotext.txt").read_text()
    assert json.loads((out / "plan.json").read_text())["error"].startswith("RuntimeError")


def test_demo_runs_offline_and_readme_shows_its_prompt(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lib_multipass", "demo", "--out", str(tmp_path / "demo"), "--cache", str(tmp_path / "c")],
        capture_output=True, text=True, cwd=ROOT, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert files == ["base.png", "final.png", "infotext.txt", "mask.png", "overview.png", "person_1.png", "plan.json"]
    assert "random weights" in proc.stderr and "--checkpoint" in proc.stderr
    assert Image.open(tmp_path / "demo" / "overview.png").size == (3 * 256, 256 + 16)
    assert DEMO_PROMPT in (ROOT / "README.md").read_text()


def test_unreachable_hub_id_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lib_multipass", "run", "--checkpoint", "someone/no-such-model", "--prompt", "a forest",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2 and "cannot load checkpoint 'someone/no-such-model'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_mask_command_writes_maps_and_reports_instances(tiny, tmp_path, capsys):
    photo = Image.new("RGB", (120, 80), (90, 90, 90))
    photo.save(tmp_path / "p.png")
    code = main(["mask", str(tmp_path / "p.png"), "--prompt", "person | hat", "--segmenter", str(tiny.segmenter),
                 "--mask_threshold", "0.5", "--mask_dilate=-2%", "--mask_blur", "3", "--persons", "2",
                 "--out", str(tmp_path / "m")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size"] == [120, 80] and report["options"]["mask_dilate"] == "-2%"
    assert report["options"]["mask_prompt"] == ["person", "hat"]
    for box in (i["box"] for i in report["instances"]):
        assert 0 <= box[0] < box[2] <= 120 and 0 <= box[1] < box[3] <= 80
    for name in ("prob.png", "mask.png", "overlay.png"):
        assert Image.open(tmp_path / "m" / name).size == (120, 80)


def test_mask_command_with_a_subject_detector_or_a_clear_error_without_its_weights(tiny, tmp_path, capsys):
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 255, (80, 120, 3), dtype=np.uint8))
    photo.save(tmp_path / "p.png")
    common = ["mask", str(tmp_path / "p.png"), "--prompt", "bottle", "--segmenter", str(tiny.segmenter),
              "--out", str(tmp_path / "m")]
    assert main([*common, "--detector", str(tiny.detector)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(0 <= i["box"][0] < i["box"][2] <= 120 for i in report["instances"])
    assert main([*common, "--detector", str(tmp_path / "no-owl")]) == 2  # named, so missing is an error
    err = capsys.readouterr().err
    assert "subject detector weights" in err and "no-owl" in err and "Traceback" not in err


def test_mask_command_bad_flag_value(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "p.png")
    assert main(["mask", str(tmp_path / "p.png"), "--prompt", "person", "--mask_threshold", "2", "--out",
                 str(tmp_path / "m")]) == 2
    assert "`mask_threshold` must be a number from 0 to 1" in capsys.readouterr().err


def test_unknown_sampler_fails_before_any_model_is_loaded(tmp_path, capsys):
    code = main(["run", "--checkpoint", "nowhere.safetensors", "--prompt", "a BREAK b", "--out", str(tmp_path / "o"),
                 "--options", '{"person_sampler": "Heun"}'])
    err = capsys.readouterr().err
    assert code == 2 and "`person_sampler`: unknown sampler 'Heun'" in err and "loading" not in err


def test_run_with_controlnet_from_an_input_photo(tiny, tmp_path):
    photo = Image.new("RGB", (80, 64), (30, 60, 90))
    photo.save(tmp_path / "photo.png")
    out = tmp_path / "out"
    code = main(run_args(tiny, out, "a beach BREAK ohwx man --mask_threshold 0.5", "--init-image", str(tmp_path / "photo.png"),
                         "--controlnet", "canny", "--controlnet-model", str(tiny.controlnet),
                         "--options", '{"mask_min_area": 0}'))
    assert code == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["passes"][0]["kind"] == "img2img" and plan["passes"][0]["control"]["source"] == "input"
    assert plan["passes"][1]["control"]["kind"] == "canny"
    assert "Multipass ControlNet: canny" in (out / "infotext.txt").read_text()


def test_depth_without_its_annotator_is_a_clear_error(tiny, tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "photo.png")
    code = main(run_args(tiny, tmp_path / "out", "a beach BREAK man", "--init-image", str(tmp_path / "photo.png"),
                         "--controlnet", "depth", "--controlnet-model", str(tiny.controlnet)))
    err = capsys.readouterr().err
    assert code == 2 and "controlnet_aux" in err and "control image" in err and not (tmp_path / "out" / "base.png").exists()


def test_a_broken_lora_file_fails_before_any_pass(tmp_path):
    from safetensors.numpy import save_file

    from lib_multipass.errors import ModelNotFoundError
    from lib_multipass.lora_files import find_loras

    good = {"lora_unet_x.lora_down.weight": np.ones((4, 8), np.float32),
            "lora_unet_x.lora_up.weight": np.ones((8, 4), np.float32)}
    save_file(good, tmp_path / "good.safetensors")
    assert find_loras(tmp_path, ["good"])
    data = (tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-20])
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    save_file({"model.weight": np.ones((2, 2), np.float32)}, tmp_path / "checkpoint.safetensors")
    for name, words in (("cut", "cut short"), ("junk", "not a safetensors"), ("checkpoint", "no LoRA weights")):
        with pytest.raises(ModelNotFoundError, match=words):
            find_loras(tmp_path, [name])
