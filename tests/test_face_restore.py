"""Face restoration (`face_correct`): standalone GFPGAN through spandrel on random weights of
GFPGANv1.4's architecture, faces aligned by their five points and put back with a feathered
mask (nothing outside the face changes); in the WebUI its own restorer after the passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from webui_support import PROMPT, job  # noqa: F401
from webui_support import run as run_webui

# isort: split
from modules import processing

from lib_multipass.engines.recording import RecordingEngine
from lib_multipass.errors import OptionsError
from lib_multipass.faces.detect import Face
from lib_multipass.faces.restore import FFHQ, restore_faces
from lib_multipass.image_models import FACE_RESTORERS, _architecture, load_image_model
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import parse
from lib_multipass.runner import run


@pytest.fixture(scope="module")
def gfpgan(tmp_path_factory):
    """Random weights in GFPGANv1.4's architecture and sizes (86 M parameters)."""
    _architecture("GFPGAN")
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    model = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                   fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    path = tmp_path_factory.mktemp("restorers") / "GFPGANv1.4.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    return path


def face_in(size=(240, 200), scale=0.25, at=(60, 40)) -> Face:
    """A face whose five points are FFHQ's layout scaled into the image at `at`."""
    points = FFHQ * scale + np.array(at, np.float32)
    box = (int(points[:, 0].min()) - 20, int(points[:, 1].min()) - 30, int(points[:, 0].max()) + 20,
           int(points[:, 1].max()) + 20)
    return Face(box, 0.9, tuple(map(tuple, points.tolist())))


def scene() -> Image.Image:
    noise = np.random.default_rng(1).random((50, 60, 3)) * 255
    return Image.fromarray(noise.astype(np.uint8)).resize((240, 200), Image.Resampling.BICUBIC)


def test_a_face_is_restored_in_place_and_nothing_else_changes(gfpgan):
    model = load_image_model(str(gfpgan), FACE_RESTORERS)
    assert model.architecture.id == "GFPGAN"
    image, face = scene(), face_in()
    restored, count = restore_faces(image, [face], model, min_size=20)
    again, _ = restore_faces(image, [face], model, min_size=20)
    assert count == 1 and np.array_equal(np.asarray(restored), np.asarray(again))  # the same face every time
    changed = np.any(np.asarray(restored) != np.asarray(image), axis=2)
    ys, xs = np.nonzero(changed)
    (x0, y0), side = (60, 40), 512 * 0.25  # the aligned 512 px square, back in the image
    assert changed.sum() > 500
    assert x0 - 1 <= xs.min() and xs.max() <= x0 + side + 1 and y0 - 1 <= ys.min() and ys.max() <= y0 + side + 1
    small, none = restore_faces(image, [face], model, min_size=1000)
    assert none == 0 and np.array_equal(np.asarray(small), np.asarray(image))  # below face_min_size: untouched


def test_the_runner_restores_after_the_passes_and_before_finishing(gfpgan):
    face = face_in((64, 64), scale=0.08, at=(10, 8))
    engine = RecordingEngine({"person": np.ones((64, 64), np.float32)}, faces=[face])
    options = MultipassOptions.from_dict({"face_correct": True, "face_correct_model": str(gfpgan), "film_grain": 0.2})
    result = run(make_plan(parse("a BREAK b"), options, Generation(width=64, height=64)), engine)
    assert list(result.images) == ["base", "person_1", "restored", "finished"] and result.error is None
    assert not np.array_equal(np.asarray(result.images["restored"]), np.asarray(result.images["person_1"]))


def test_face_correct_weights_that_are_not_there_are_refused_before_any_model_loads(tmp_path):
    from lib_multipass.standalone.cli import build_parser
    from lib_multipass.standalone.job import plan_from_args

    def plan(*flags):
        return plan_from_args(build_parser().parse_args(
            ["run", "--checkpoint", "m", "--out", str(tmp_path), "--prompt", "a BREAK b", "--face-correct", *flags]))

    with pytest.raises(OptionsError, match="face_correct_model.*GFPGANv1.4 \\(downloaded once\\)"):
        plan("--face-correct-model", str(tmp_path / "missing.pth"))
    assert plan()[1].options.face_correct  # blank: GFPGANv1.4, downloaded on first use


def test_in_the_webui_face_correct_is_its_own_restoration_after_the_passes():
    processing.FACE_RESTORATION_SAW.clear()
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_blur": 0, "mask_dilate": 0, "face_correct": True},))
    processed = run_webui(p)
    assert p.restore_faces and len(processing.FACE_RESTORATION_SAW) == 1
    assert "Multipass face correct: True" in processed.infotexts[0]
