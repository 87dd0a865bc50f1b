"""Shared by the WebUI adapter's tests: the stand-in of WebUI 1.10.1 on sys.path, the script
module loaded as the WebUI loads it, a segmenter stand-in and a txt2img job builder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "webui_standin"))

import networks  # noqa: E402
from modules import errors, extra_networks, images, paths, processing, scripts, shared  # noqa: E402

from lib_multipass.webui import hooks  # noqa: E402
from lib_multipass.webui.args import UI_FIELDS  # noqa: E402


def load_script_module():
    spec = importlib.util.spec_from_file_location("multipass_script", ROOT / "scripts" / "multipass.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script_module()


#: the stand-ins below see a person and a face in whole job images of this size only: they
#: cannot know where a crop of one came from, so crops show nothing and the people-first
#: mask path falls back to the whole-image map (masks/people.py is tested in the core)
JOB_SIZE = (64, 64)


class LeftHalf:
    """A segmenter stand-in: 'person' is a box in the left half of the image."""

    unloaded = 0

    def probabilities(self, image, terms):
        w, h = image.size
        prob = np.zeros((h, w), np.float32)
        if "person" in terms and (image.size == JOB_SIZE or max(w, h) > 64):
            prob[h // 4: 3 * h // 4, w // 8: w // 2] = 0.9
        return prob

    def unload(self):
        self.unloaded += 1


class Helper(scripts.Script):
    """A whitelisted helper script (like the Lora extension's) and one that is not."""

    def __init__(self, name):
        self.filename = f"/ext/scripts/{name}.py"
        self.seen = []

    def title(self):
        return self.filename

    def process(self, p, *args):
        self.seen.append(type(p).__name__)


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path):
    processing.calls.clear()
    extra_networks.activations.clear()
    errors.reported.clear()
    images.saved.clear()
    processing.FACE_RESTORATION_SAW.clear()
    processing.STYLES.clear()
    processing.PROGRESS.clear()
    processing.ON_STEP.clear()
    shared.state.begin()
    shared.opts.data["overlay_inpaint"] = True
    shared.opts.data.pop("multipass_save_passes", None)
    networks.available_networks.clear()
    networks.available_networks["ohwx"] = object()
    monkeypatch.setattr(hooks, "shared_segmenter", lambda source, device: LeftHalf())
    shared.opts.data["multipass_refiner"] = ""  # no SAM download from the stand-in tests
    shared.opts.data["multipass_detector"] = ""  # nor a subject detector's
    monkeypatch.setattr(paths, "data_path", str(tmp_path))
    processing.StableDiffusionProcessing.cached_c = ["outer-cond", None]


def job(prompt, args=None, negative="ugly", width=64, height=64, **kwargs):
    """A txt2img job with the multipass script (and two helper scripts), run through process_images."""
    script = SCRIPT.MultipassScript()
    kept, dropped = Helper("dynamic_prompting"), Helper("some_other_extension")
    if args is None:
        args = ({"enabled": True, "mask_blur": 0, "mask_dilate": 0},)
    args = tuple(args) + (None,) * (len(UI_FIELDS) - len(args))
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt, negative_prompt=negative, seed=100, steps=4, cfg_scale=6.0, width=width, height=height,
        sampler_name="Euler a", outpath_samples="/out", **kwargs)
    p.scripts = scripts.ScriptRunner([(kept, 0), (script, len(UI_FIELDS)), (dropped, 0)])
    p.script_args = args
    return p, script, kept, dropped


def run(p):
    return processing.process_images(p)


def base_calls():
    return [c for c in processing.calls if c["kind"] == "StableDiffusionProcessingTxt2Img"]


def nested_calls():
    return [c for c in processing.calls if c["kind"] == "StableDiffusionProcessingImg2Img"]


PROMPT = "a forest BREAK photo BREAK ohwx man <lora:ohwx:0.8> --mask_blur 2"


class OneFace:
    """A face detector stand-in: one face inside LeftHalf's person."""

    name = "one face"

    def detect(self, image):
        from lib_multipass.faces.detect import Face

        return [Face((12, 16, 44, 48), 0.9)] if image.size == JOB_SIZE else []


def one_face(monkeypatch):
    from lib_multipass.webui import engine as webui_engine

    monkeypatch.setattr(webui_engine, "webui_face_detector", lambda root: (OneFace(), ""))
