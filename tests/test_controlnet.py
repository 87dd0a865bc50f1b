"""ControlNet: which base pass runs, hints (pose from a real photo, canny), crop alignment, and the
hint reaching a tiny random ControlNet."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data

from lib_multipass.control.hints import canny_hint, make_hint, pose_keypoints
from lib_multipass.engines.base import ControlInput, GenerateRequest
from lib_multipass.engines.diffusers import crop_hint
from lib_multipass.engines.recording import RecordingEngine
from lib_multipass.errors import ModelNotFoundError, MultipassError, OptionsError
from lib_multipass.masks.crop import crop_box
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import parse
from lib_multipass.runner import run

GEN = Generation(seed=3, steps=4, width=64, height=64, sampler="euler")


def plan_with(prompt="scene BREAK man", **options):
    return make_plan(parse(prompt), MultipassOptions.from_dict(options), GEN)


def test_the_switch_picks_the_base_pass(tmp_path):
    photo = str(tmp_path / "p.png")
    txt = plan_with(input_image=photo, controlnet="pose", controlnet_txt2img=True)
    assert txt.base.kind == "base" and txt.base.control.source == "input" and txt.persons[0].control.source == "input"
    img = plan_with(input_image=photo, controlnet="pose", base_denoising_strength=0.5)
    assert img.base.kind == "img2img" and img.base.denoise == 0.5
    assert plan_with(input_image=photo).base.kind == "input"  # no ControlNet: prompt masking
    from_base = plan_with(controlnet="pose", controlnet_pose_from_base=True)
    assert from_base.base.control is None and from_base.persons[0].control.source == "base"
    hint = plan_with(controlnet="canny", controlnet_image=photo, controlnet_conditioning_scale=0.6)
    assert hint.base.control.source == "hint" and hint.base.control.scale == 0.6
    assert [p.kind for p in plan_with("one scene", input_image=photo, controlnet="pose").passes] == ["img2img"]


def test_unknown_controlnet_type_is_an_option_error():
    with pytest.raises(OptionsError, match="one of pose, canny"):
        MultipassOptions.from_dict({"controlnet": "segmentation"})


def test_pose_hint_of_a_real_photo_puts_the_head_in_the_face():
    photo = Image.fromarray(data.astronaut())
    points = pose_keypoints(photo)
    from mediapipe.python.solutions import face_detection

    with face_detection.FaceDetection(model_selection=1) as detector:
        box = detector.process(np.asarray(photo)).detections[0].location_data.relative_bounding_box
    x0, y0 = box.xmin * 512, box.ymin * 512
    nose, neck = points[0], points[1]
    assert nose[2] and x0 <= nose[0] <= x0 + box.width * 512 and y0 <= nose[1] <= y0 + box.height * 512
    assert neck[1] > nose[1]  # the neck is below the head
    hint = np.asarray(make_hint("pose", photo))
    assert hint.shape == (512, 512, 3) and hint[int(nose[1]), int(nose[0])].any() and not hint[5, 500].any()


def test_no_person_in_the_pose_image_is_a_clear_error():
    with pytest.raises(MultipassError, match="no person pose"):
        make_hint("pose", Image.new("RGB", (128, 128), "gray"))


def test_canny_hint_finds_edges():
    image = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=255)
    edges = np.asarray(canny_hint(image))[..., 0]
    assert edges[14:19, 30].max() == 255 and edges[30, 30] == 0 and edges[2, 2] == 0


def test_hint_crop_is_aligned_with_the_image_crop():
    image, hint = Image.new("RGB", (200, 120)), Image.new("RGB", (200, 120))
    for target in (image, hint):
        target.putpixel((130, 70), (255, 255, 255))
    mask = np.zeros((120, 200), bool)
    mask[60:80, 120:140] = True
    box = crop_box(mask, 10, (64, 64))
    crop = image.crop(box).resize((64, 64), Image.Resampling.BILINEAR)
    control = ControlInput(hint, "canny", None, 1.0, 0.0, 1.0)
    hint_crop = crop_hint(control, box, (64, 64), crop, Image.new("L", (64, 64)))
    assert np.argmax(np.asarray(crop).sum(axis=2)) == np.argmax(np.asarray(hint_crop).sum(axis=2))


def test_runner_makes_hints_once_and_resizes_them(tmp_path):
    photo = Image.new("RGB", (100, 80), "white")
    ImageDraw.Draw(photo).rectangle((30, 20, 70, 60), fill="black")
    photo.save(tmp_path / "p.png")
    engine = RecordingEngine({"person": np.ones((64, 64), np.float32)})
    plan = plan_with(input_image=str(tmp_path / "p.png"), controlnet="canny")
    result = run(plan, engine)
    kind, base_request, denoise, upscaler = engine.requests[0]
    assert kind == "img2img" and denoise == 0.75 and upscaler == "Lanczos" and base_request.control.hint.size == (64, 64)
    assert engine.requests[-1].generate.control.hint.size == result.images["base"].size


# -- the tiny random ControlNet ---------------------------------------------------------------------


def request(control=None, seed=4):
    return GenerateRequest("a forest", "", (), seed, 3, 7.0, "euler", 64, 64, control)


def unit(tiny, hint, scale=1.0):
    return ControlInput(hint, "canny", str(tiny.controlnet), scale, 0.0, 1.0)


def test_the_hint_reaches_the_unet(engine, tiny):
    square = Image.new("RGB", (64, 64))
    ImageDraw.Draw(square).rectangle((16, 16, 47, 47), outline="white")
    other = Image.new("RGB", (64, 64))
    ImageDraw.Draw(other).line((0, 0, 63, 63), fill="white", width=3)
    first = np.asarray(engine.txt2img(request(unit(tiny, square))))
    assert not np.array_equal(first, np.asarray(engine.txt2img(request(unit(tiny, other)))))
    assert not np.array_equal(first, np.asarray(engine.txt2img(request(unit(tiny, square, 0.3)))))
    zero = np.asarray(engine.txt2img(request(unit(tiny, square, 0.0))))
    assert np.array_equal(zero, np.asarray(engine.txt2img(request())))  # scale 0 is no ControlNet, exactly
    assert engine.pipeline("txt2img", unit(tiny, square)).unet is engine.pipe.unet  # shared, no copy


def test_controlnet_in_the_person_pass_keeps_pixels_outside_the_mask(engine, tiny, tmp_path):
    photo = Image.new("RGB", (96, 64), (40, 90, 160))
    ImageDraw.Draw(photo).ellipse((30, 8, 66, 60), fill=(220, 180, 150))
    photo.save(tmp_path / "photo.png")
    subject = Image.new("L", (96, 64))
    ImageDraw.Draw(subject).rectangle((30, 8, 66, 60), fill=255)
    subject.save(tmp_path / "mask.png")
    plan = make_plan(parse("a beach BREAK ohwx man"), MultipassOptions.from_dict({
        "input_image": str(tmp_path / "photo.png"), "mask_image": str(tmp_path / "mask.png"), "controlnet": "canny",
        "controlnet_model": str(tiny.controlnet), "mask_blur": 2}), Generation(seed=1, steps=4, width=64, height=64,
                                                                               sampler="euler"))
    result = run(plan, engine)
    assert result.error is None, result.error
    base, final, alpha = (np.asarray(result.images["base"]), np.asarray(result.final), result.alphas["person_1"])
    assert base.shape == (64, 64, 3) and np.array_equal(base[alpha == 0], final[alpha == 0])


def test_missing_controlnet_weights(engine, tmp_path):
    hint = Image.new("RGB", (64, 64))
    with pytest.raises(ModelNotFoundError, match="cannot load ControlNet"):
        engine.txt2img(request(ControlInput(hint, "canny", str(tmp_path / "none"), 1.0, 0.0, 1.0)))
    with pytest.raises(ModelNotFoundError, match="needs its weights"):
        engine.txt2img(request(ControlInput(hint, "canny", None, 1.0, 0.0, 1.0)))
