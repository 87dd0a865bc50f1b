"""Hostile API requests get HTTP 422 naming the field, before any pass (the middleware's check),
and the extension's own routes answer the same way."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from webui_support import PROMPT, LeftHalf, clean, job, nested_calls, run  # noqa: F401

# isort: split
from modules import processing

from lib_multipass.errors import OptionsError
from lib_multipass.webui import api, checks


def host(models=("control_v11p_sd15_openpose [cab727d4]",), max_persons=2, folders=()):
    return checks.Host({"dpm++ 2m": "DPM++ 2M", "euler a": "Euler a", "k_euler_a": "Euler a"}, ["Karras"],
                       list(models) if models is not None else None, max_persons, tuple(folders))


def check(body, **kwargs):
    return api.check_generation_request(json.dumps(body).encode(), lambda: host(**kwargs))


def request(args, prompt=PROMPT, **fields):
    return {"prompt": prompt, **fields, "alwayson_scripts": {"multipass": {"args": args}}}


@pytest.mark.parametrize("body,field", [
    (request([{"mask_dilate": 100000}]), "mask_dilate"),
    (request([{"mask_dilate": "-250%"}]), "mask_dilate"),
    (request([{"person_sampler": "Nope"}]), "person_sampler"),
    (request([{"denoising_strength": 2}]), "denoising_strength"),
    (request([{"mask_prompt": ["x"] * 40}]), "mask_prompt"),
    (request("abc"), "args"),
    (request(["abc"]), "enabled"),
    (request([{}], width=0), "width"),
    (request([{}], width=8), "width"),
    (request([{}], steps=0), "steps"),
    (request([{}], steps="many"), "steps"),
    (request([{}], prompt=["a", "b"]), "prompt"),
    (request([{}], prompt="a BREAK b BREAK c BREAK d BREAK e"), "prompt"),  # 3 persons, 2 allowed
    (request([{}], prompt="a BREAK b --nope"), "prompt"),
    (request([{"controlnet": "pose"}]), "controlnet_model"),
    (request([{"controlnet": "pose", "controlnet_model": "missing_cn"}]), "controlnet_model"),
    (request([{"controlnet": "pose", "controlnet_model": "control_v11p_sd15_openpose"}]), "controlnet"),  # no hint
    (request([{}], width=100000), "width"),
    (request([{"mask_image": "/no/such/mask.png"}]), "mask_image"),
    (request([{"input_image": "data:image/png;base64,AAAA"}]), "input_image"),
])
def test_bad_requests_name_their_field(body, field):
    error = check(body)
    assert error is not None and error["field"] == field, error
    assert error["detail"]


def test_controlnet_without_the_extension_names_it():
    error = check(request([{"controlnet": "pose", "controlnet_model": "x"}]), models=None)
    assert error["field"] == "controlnet" and "sd-webui-controlnet" in error["detail"]


def test_good_requests_pass():
    png = base64.b64encode(_png(64, 64)).decode()
    assert check(request([{"person_sampler": "DPM++ 2M Karras", "controlnet": "pose", "controlnet_pose_from_base": True,
                           "controlnet_model": "control_v11p_sd15_openpose", "mask_image": png}])) is None
    assert check(request([{"person_sampler": "k_euler_a"}], steps=4, width=64, height=64, seed=-1)) is None
    assert check(request([{"enabled": False, "person_sampler": "Nope"}])) is None  # off: not ours to judge
    assert check({"prompt": "x"}) is None


def test_sampler_names_resolve_to_the_webuis_own():
    h = host()
    assert checks.resolve_sampler("k_euler_a", h) == "Euler a"
    assert checks.resolve_sampler("dpm++ 2m karras", h) == "DPM++ 2M Karras"
    assert checks.resolve_sampler("Nope Karras", h) is None
    assert checks.resolve_controlnet_model("control_v11p_sd15_openpose", h) == "control_v11p_sd15_openpose [cab727d4]"


def _png(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (9, 9, 9)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("body,field", [
    ({"image": base64.b64encode(_png(64, 64)).decode(), "persons": "abc"}, "persons"),
    ({"image": base64.b64encode(_png(64, 64)).decode(), "persons": -1}, "persons"),
    ({"image": base64.b64encode(_png(64, 64)).decode(), "persons": 9}, "persons"),
    ({"image": base64.b64encode(_png(1, 1)).decode()}, "image"),
    ({"image": "not base64 at all"}, "image"),
    ({"image": 5}, "image"),
    ({}, "image"),
    (["a list"], "body"),
])
def test_mask_route_refuses_bad_input(body, field):
    with pytest.raises(OptionsError) as caught:
        api.mask_payload(body, LeftHalf(), 4)
    assert caught.value.field == field


@pytest.mark.parametrize("body,field", [
    ({"prompt": ["a", "b"]}, "prompt"), ({"prompt": "a", "options": "x"}, "options"), ("text", "body"),
])
def test_parse_route_refuses_bad_input(body, field):
    with pytest.raises(OptionsError) as caught:
        api.parse_payload(body)
    assert caught.value.field == field


def test_inline_images_are_used_and_never_written_into_the_infotext():
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    inline = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_image": inline},))
    processed = run(p)
    assert len(nested_calls()) == 1 and nested_calls()[0]["mask"][:, :30].all()
    assert "base64" not in processed.infotexts[0] and "Multipass mask image: inline image (0 KB)" in processed.infotexts[0]


def test_process_hook_refuses_what_the_api_would():
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "person_sampler": "Nope"},))
    run(p)
    assert processing.calls == [] and "person_sampler" in p.extra_generation_params["Multipass error"]


def test_server_paths_only_inside_the_allowed_folders(tmp_path):
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (allowed / "m.png").write_bytes(_png(64, 64))
    (other / "m.png").write_bytes(_png(64, 64))
    (allowed / "escape.png").symlink_to(other / "m.png")
    inside = request([{"mask_image": str(allowed / "m.png")}])
    assert check(inside, folders=[allowed]) is None
    assert check(inside)["field"] == "mask_image"  # no folder allowed by default: base64 only
    for path in (other / "m.png", allowed / "escape.png", allowed / ".." / "other" / "m.png"):
        error = check(request([{"mask_image": str(path)}]), folders=[allowed])
        assert error["field"] == "mask_image" and "outside the allowed folders" in error["detail"]
    error = check(request([{"face_swap": True, "face_swap_images": [str(other)]}]), folders=[allowed])
    assert error["field"] == "face_swap_images"
    error = check(request([{"face_swap_model": "/etc/passwd"}]), folders=[allowed])
    assert error["field"] == "face_swap_model"


def test_colour_grading_is_a_film_look_or_a_cube_inside_the_allowed_folders(tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    steps = [f"{r} {g} {b}" for b in (0, 1) for g in (0, 1) for r in (0, 1)]
    (allowed / "look.cube").write_text("LUT_3D_SIZE 2\n" + "\n".join(steps) + "\n")
    (tmp_path / "look.cube").write_text("LUT_3D_SIZE 2\n" + "\n".join(steps) + "\n")
    assert check(request([{"color_grading": "Film Portra"}])) is None
    assert check(request([{"color_grading": str(allowed / "look.cube")}]), folders=[allowed]) is None
    error = check(request([{"color_grading": str(tmp_path / "look.cube")}]), folders=[allowed])
    assert error["field"] == "color_grading" and "outside the allowed folders" in error["detail"]
    error = check(request([{"color_grading": "Kodachrome"}]))
    assert error["field"] == "color_grading" and "Film Velvia" in error["detail"]


def test_grain_and_grading_come_last_after_the_webuis_face_restoration():
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_blur": 0, "mask_dilate": 0, "film_grain": 0.5,
                                    "color_grading": "Film Velvia"},), restore_faces=True)
    processed = run(p)
    plain, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_blur": 0, "mask_dilate": 0},), restore_faces=True)
    unfinished = run(plain)
    before = np.asarray(unfinished.images[0])
    assert np.array_equal(processing.FACE_RESTORATION_SAW[0], processing.FACE_RESTORATION_SAW[1])  # same job until then
    from lib_multipass.finish import film_grain, grade

    expected = film_grain(grade(Image.fromarray(before), "Film Velvia"), 0.5, p.seeds[0])
    assert np.array_equal(np.asarray(processed.images[0]), np.asarray(expected))
    assert "Multipass film grain: 0.5" in processed.infotexts[0]
    assert "Multipass color grading: Film Velvia" in processed.infotexts[0]


def test_super_resolution_with_the_webuis_upscaler_by_name_before_grain():
    from modules import shared

    esrgan = next(u for u in shared.sd_upscalers if u.name == "R-ESRGAN 4x+")
    esrgan.scaler.calls.clear()
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_blur": 0, "mask_dilate": 0, "super_resolution": 2,
                                    "super_resolution_upscaler": "R-ESRGAN 4x+", "film_grain": 0.2},))
    processed = run(p)
    assert processed.images[0].size == (128, 128)
    assert esrgan.scaler.calls == [((64, 64), 2, "models/RealESRGAN/RealESRGAN_x4plus.pth")]
    assert "Multipass super resolution: 2" in processed.infotexts[0]
    error = check(request([{"super_resolution": 2, "super_resolution_upscaler": "SwinIR 8x"}]))
    assert error["field"] == "super_resolution_upscaler" and "use one of: Lanczos" in error["detail"]


def test_the_harmonizing_pass_upscales_with_the_webuis_upscaler_before_its_face_restoration():
    from modules import shared

    esrgan = next(u for u in shared.sd_upscalers if u.name == "R-ESRGAN 4x+")
    esrgan.scaler.calls.clear()
    processing.FACE_RESTORATION_SAW.clear()
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_blur": 0, "mask_dilate": 0, "hires_denoising_strength": 0.3,
                                    "hires_scale": 1.5, "hires_upscaler": "R-ESRGAN 4x+"},), restore_faces=True)
    processed = run(p)
    assert processed.images[0].size == (96, 96)
    assert esrgan.scaler.calls == [((64, 64), 1.5, "models/RealESRGAN/RealESRGAN_x4plus.pth")]
    person, harmonize = nested_calls()
    assert harmonize["p"].image_mask is None and harmonize["size"] == (96, 96) and harmonize["denoise"] == 0.3
    assert "ohwx man" in harmonize["prompt"] and [a for a in harmonize["loras"]] == person["loras"]  # their LoRA
    assert processing.FACE_RESTORATION_SAW[0].shape == (96, 96, 3)  # the WebUI's restoration saw the harmonized image
    assert np.array_equal(processing.FACE_RESTORATION_SAW[0], np.asarray(processed.images[0]))
    assert "Multipass harmonize denoise: 0.3" in processed.infotexts[0]
    assert "Multipass harmonize upscale: 1.5" in processed.infotexts[0]
    error = check(request([{"hires_denoising_strength": 0.3, "hires_scale": 2, "hires_upscaler": "Latent"}]))
    assert error["field"] == "hires_upscaler" and "use one of: Lanczos" in error["detail"]
