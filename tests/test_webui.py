"""The WebUI adapter driven through the WebUI's hook order on a stand-in of its modules."""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from webui_support import PROMPT, SCRIPT, LeftHalf, base_calls, clean, job, nested_calls, one_face, run  # noqa: F401

# isort: split
import networks  # noqa: E402
from modules import errors, images, paths, processing, scripts, shared  # noqa: E402

from lib_multipass.options import MultipassOptions  # noqa: E402
from lib_multipass.webui import api, hooks, xyz  # noqa: E402
from lib_multipass.webui.args import UI_FIELDS, infotext_label, options_from_args, paste_value  # noqa: E402


def test_base_prompt_rewritten_and_lora_only_in_the_person_pass():
    p, _, _, _ = job(PROMPT)
    processed = run(p)
    (base,), (person,) = base_calls(), nested_calls()
    assert base["prompt"] == "a forest, photo" and base["loras"] == [] and base["negative"] == "ugly"
    assert person["prompt"] == "ohwx man, photo " and person["loras"] == ["ohwx"]
    assert p.all_prompts == [PROMPT]  # the user's prompt is what the infotext keeps
    assert processed.infotexts[0].startswith(PROMPT)
    assert not errors.reported


def test_nested_pass_parameters():
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "denoising_strength": 0.55, "mask_dilate": 0,
                                    "person_steps": 9, "person_cfg": 4.5, "person_sampler": "DPM++ 2M",
                                    "inpaint_padding": 12},))
    run(p)
    person = nested_calls()[0]
    # the WebUI gets the whole feathered region and no blur of its own: the paste is ours
    assert (person["denoise"], person["blur"], person["padding"], person["fill"], person["full_res"]) == (
        0.55, 0, 12, 1, True)
    assert (person["seed"], person["steps"], person["cfg_scale"], person["sampler"]) == (101, 9, 4.5, "DPM++ 2M")
    assert person["size"] == (64, 64) and person["negative"] == "ugly"
    assert person["mask"][32, 10] and not person["mask"][32, 60]


def test_person_pass_replaces_the_image_before_face_restoration_and_keeps_other_pixels():
    p, _, _, _ = job(PROMPT, restore_faces=True)
    processed = run(p)
    final = np.asarray(processed.images[0])
    seen = processing.FACE_RESTORATION_SAW[0]
    assert np.array_equal(final, seen)
    base_colour = processing.colour("a forest, photo", 100)
    person = nested_calls()[0]
    person_colour = tuple(c + person["noise"] for c in processing.colour("ohwx man, photo ", 101))
    assert tuple(final[2, 62]) == base_colour  # outside the mask: the base image, bit-exact
    assert tuple(final[32, 20]) == person_colour


@pytest.mark.parametrize("stored", [True, False], ids=["in config.json", "fresh install"])
def test_the_nested_pass_turns_the_inpaint_overlay_off_for_itself_only(stored):
    """The WebUI puts back only overridden options already in its data: on a fresh Forge (no
    config.json) an override stayed for every later job."""
    if not stored:
        del shared.opts.data["overlay_inpaint"]
    p, _, _, _ = job(PROMPT)
    processed = run(p)
    assert tuple(np.asarray(processed.images[0])[32, 20]) != processing.colour("a forest, photo", 100)
    assert nested_calls()[0]["p"].override_settings == {}
    assert shared.opts.data.get("overlay_inpaint", "absent") == (True if stored else "absent")


def test_nested_pass_runs_only_whitelisted_scripts_and_keeps_outer_state():
    (Path(paths.data_path) / "params.txt").write_text("outer", encoding="utf8")
    p, script, kept, dropped = job(PROMPT)
    shared.state.job_count = 1
    run(p)
    assert kept.seen == ["StableDiffusionProcessingTxt2Img", "StableDiffusionProcessingImg2Img"]
    assert dropped.seen == ["StableDiffusionProcessingTxt2Img"]
    assert nested_calls()[0]["p"].scripts.alwayson_scripts == [kept]
    # the WebUI's class-level cond cache holds the outer job's prompts: the nested pass had its own
    assert processing.StableDiffusionProcessing.cached_c[0] == (("a forest, photo",), 4)
    assert shared.state.job_count == 2 and shared.state.job_no == 2  # the person pass counted in the job
    assert (Path(paths.data_path) / "params.txt").read_text(encoding="utf8").startswith(PROMPT)


def test_infotext_keys_and_paste_back():
    args = ({"enabled": True, "denoising_strength": 0.6, "mask_prompt": "man | hat", "mask_dilate": "-5%"},)
    p, _, _, _ = job("a forest BREAK ohwx man", args=args)
    processed = run(p)
    text = processed.infotexts[0]
    assert "Multipass: 0.1.0" in text and "Multipass denoise: 0.6" in text
    assert 'Multipass mask prompt: man | hat' in text and "Multipass mask dilate: -5%" in text
    params = dict(item.split(": ", 1) for item in text.splitlines()[-1].split(", ") if ": " in item)
    pasted = [paste_value(name, params) for name in UI_FIELDS]
    assert options_from_args(pasted) == options_from_args(args)


def test_field_table_and_options_stay_in_sync():
    labels = [infotext_label(name) for name in UI_FIELDS]
    assert len(set(labels)) == len(labels) and all(label.startswith("Multipass") for label in labels)
    defaults = [paste_value(name, {"Multipass": "0.1.0"}) for name in UI_FIELDS]
    assert options_from_args(defaults) == MultipassOptions()
    assert options_from_args([False] + defaults[1:]).enabled is False


def test_ui_positional_args_blank_means_same_as_main():
    values = dict(zip(UI_FIELDS, [paste_value(n, {"Multipass": "1"}) for n in UI_FIELDS]))
    values.update(person_steps=0, person_cfg=0, person_sampler="Use same sampler", mask_blur=0, mask_dilate="0")
    p, _, _, _ = job(PROMPT, args=[values[n] for n in UI_FIELDS])
    run(p)
    person = nested_calls()[0]
    assert (person["steps"], person["cfg_scale"], person["sampler"]) == (4, 6.0, "Euler a")


def test_disabled_or_single_segment_leaves_the_job_alone():
    p, _, _, _ = job(PROMPT, args=({"enabled": False},))
    run(p)
    assert base_calls()[0]["prompt"].startswith("a forest") and "BREAK" in base_calls()[0]["prompt"]
    assert not nested_calls()
    processing.calls.clear()
    p, _, _, _ = job("just a forest")
    run(p)
    assert len(processing.calls) == 1


def test_bad_api_dict_is_rejected_naming_the_field_and_nothing_runs():
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_threshhold": 0.2},))
    processed = run(p)
    assert processing.calls == [] and processed.images == []
    assert "mask_threshhold" in p.extra_generation_params["Multipass error"]
    assert "did you mean mask_threshold" in processed.comments


def test_malformed_prompt_generates_nothing():
    p, _, _, _ = job("a forest BREAK man --mask_blur lots")
    run(p)
    assert processing.calls == [] and "--mask_blur" in p.extra_generation_params["Multipass error"]


def test_api_request_check_names_the_field():
    body = {"prompt": PROMPT, "alwayson_scripts": {"Multipass": {"args": [{"mask_dilate": "big"}]}}}
    error = api.check_generation_request(json.dumps(body).encode())
    assert error["field"] == "mask_dilate" and "percent" in error["detail"]
    body["alwayson_scripts"]["Multipass"]["args"] = [{"enabled": True}]
    assert api.check_generation_request(json.dumps(body).encode()) is None
    body["prompt"] = "a BREAK b --nope"
    assert api.check_generation_request(json.dumps(body).encode())["field"] == "prompt"


def test_api_middleware_answers_422_or_passes_the_body_on():
    seen = {}

    async def app(scope, receive, send):
        seen["body"] = (await receive())["body"]

    def call(body):
        sent = []
        messages = [{"type": "http.request", "body": body[:10], "more_body": True},
                    {"type": "http.request", "body": body[10:], "more_body": False}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/sdapi/v1/txt2img"}
        asyncio.run(api.CheckMultipassArgs(app)(scope, receive, send))
        return sent

    bad = json.dumps({"prompt": "x", "alwayson_scripts": {"multipass": {"args": [{"mask_blur": -1}]}}}).encode()
    sent = call(bad)
    assert sent[0]["status"] == 422 and json.loads(sent[1]["body"])["field"] == "mask_blur" and not seen
    good = json.dumps({"prompt": "x", "alwayson_scripts": {"multipass": {"args": [{"mask_blur": 1}]}}}).encode()
    assert call(good) == [] and seen["body"] == good


def test_args_check_is_installed_even_when_the_app_already_serves():
    class Started:
        middleware_stack = object()

        def add_middleware(self, cls):
            raise RuntimeError("Cannot add middleware after an application has started")

    app = Started()
    inner = app.middleware_stack
    api.install_check(app)
    api.install_check(app)  # once only
    assert isinstance(app.middleware_stack, api.CheckMultipassArgs) and app.middleware_stack.app is inner


def test_parse_route_payload_matches_the_cli():
    out = api.parse_payload({"prompt": PROMPT, "negative_prompt": "bad"})
    assert out["segments"]["persons"] == ["ohwx man"] and out["loras"][0]["segment"] == "person_1"
    with pytest.raises(Exception, match="unknown flag"):
        api.parse_payload({"prompt": "a --x"})


def test_mask_route_payload():
    from PIL import Image

    encoded = api.encode_png(Image.new("RGB", (80, 40), (1, 2, 3)))
    out = api.mask_payload({"image": encoded, "options": {"mask_dilate": 0, "mask_blur": 0}}, LeftHalf(), 4)
    mask = np.asarray(Image.open(__import__("io").BytesIO(__import__("base64").b64decode(out["mask"]))))
    assert mask.shape == (40, 80) and mask[20, 20] == 255 and mask[20, 70] == 0
    assert out["instances"][0]["box"] == [10, 10, 40, 30]


def test_batch_2x2_every_image_gets_its_own_seed_and_pass():
    p, _, _, _ = job(PROMPT, batch_size=2, n_iter=2)
    processed = run(p)
    assert [c["seed"] for c in base_calls()] == [100, 101, 102, 103]
    assert [c["seed"] for c in nested_calls()] == [101, 102, 103, 104]
    assert len(processed.images) == 4 and all(c["loras"] == [] for c in base_calls())


def test_interrupt_between_passes_keeps_the_base_image(monkeypatch):
    class Interrupting(LeftHalf):
        def probabilities(self, image, terms):
            shared.state.interrupted = True
            return super().probabilities(image, terms)

    p, _, _, _ = job(PROMPT)
    monkeypatch.setattr(hooks, "shared_segmenter", lambda source, device: Interrupting())
    processed = run(p)
    assert nested_calls() == [] and len(processed.images) == 1
    assert tuple(np.asarray(processed.images[0])[32, 20]) == processing.colour("a forest, photo", 100)
    assert "interrupted" in processed.infotexts[0]


def test_missing_lora_is_a_warning_and_the_base_is_kept():
    networks.available_networks.clear()
    networks.available_networks.update({"someone": object()})
    p, _, _, _ = job(PROMPT)
    processed = run(p)
    assert nested_calls() == [] and len(processed.images) == 1
    assert "Multipass warnings" in processed.infotexts[0] and "'ohwx' not found" in processed.infotexts[0]


def test_hires_prompt_rewritten_for_the_base_and_restored():
    p, _, _, _ = job(PROMPT, enable_hr=True)
    processed = run(p)
    assert p.hr_prompts == ["a forest, photo"]
    assert p.all_hr_prompts == [PROMPT]
    assert "Hires prompt" not in processed.infotexts[0]


def test_styles_go_to_the_common_segment():
    processing.STYLES["film"] = ("cinematic, film grain", "")
    p, _, _, _ = job("a forest BREAK ohwx man <lora:ohwx:1> --mask_dilate 0", args=({"enabled": True},),
                     styles=["film"])
    run(p)
    assert base_calls()[0]["prompt"] == "a forest, cinematic, film grain"
    assert nested_calls()[0]["prompt"] == "ohwx man, cinematic, film grain "


def test_save_passes_adds_and_saves_intermediates():
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "save_passes": True, "mask_dilate": 0},))
    processed = run(p)
    assert len(processed.images) == 3  # final, then base and mask
    assert [s["suffix"] for s in images.saved if s["suffix"]] == ["-multipass-base", "-multipass-person_1-mask"]


def test_xyz_axis_values_reach_only_their_cell():
    p, _, _, _ = job(PROMPT)
    processing.fix_seed(p)
    cells = []
    for value in (0.3, 0.9):
        cell = copy.copy(p)
        xyz.axis_apply("denoising_strength")(cell, value, [0.3, 0.9])
        cells.append(cell)
    for cell in cells:
        run(cell)
    assert [c["denoise"] for c in nested_calls()] == [0.3, 0.9]
    assert options_from_args(p.script_args[:len(UI_FIELDS)]).denoising_strength == 0.75  # the original p is untouched


def test_xyz_axes_register_once():
    class FakeXYZ:
        class AxisOption:
            def __init__(self, label, type, apply, choices=None):
                self.label, self.type, self.apply, self.choices = label, type, apply, choices

        axis_options: list = []

    class XYZScript:
        pass

    XYZScript.__module__ = "xyz_grid.py"
    scripts.scripts_data[:] = [scripts.ScriptClassData(XYZScript, "xyz_grid.py", "/", FakeXYZ)]
    xyz.add_axes()
    xyz.add_axes()
    labels = [a.label for a in FakeXYZ.axis_options]
    assert labels == [label for label, *_ in xyz.axes()]


# -- ControlNet (sd-webui-controlnet through its external_code API) -------------------------------


def cn_job(prompt, args, outer_unit, **kwargs):
    """A job whose runner also holds the ControlNet script, with one outer unit (or none)."""
    code = importlib.import_module("extensions.sd-webui-controlnet.scripts.external_code")
    controlnet = importlib.import_module("extensions.sd-webui-controlnet.scripts.controlnet")
    script, cn = SCRIPT.MultipassScript(), controlnet.ControlNetScript()
    units = [outer_unit or code.ControlNetUnit(enabled=False)] + [code.ControlNetUnit() for _ in range(2)]
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt, negative_prompt="", seed=100, steps=4, width=64, height=64, sampler_name="Euler a",
        outpath_samples="/out", **kwargs)
    p.scripts = scripts.ScriptRunner([(script, len(UI_FIELDS)), (cn, 3)])
    p.script_args = tuple(args) + (None,) * (len(UI_FIELDS) - len(args)) + tuple(units)
    return p, code


def test_outer_controlnet_stays_for_later_batches_and_stays_out_of_the_person_pass():
    code = importlib.import_module("extensions.sd-webui-controlnet.scripts.external_code")
    outer = code.ControlNetUnit(enabled=True, module="canny", model="outer_cn")
    p, _ = cn_job(PROMPT, ({"enabled": True, "mask_dilate": 0},), outer, n_iter=2)
    run(p)
    assert [c["controlnet"] for c in base_calls()] == [[("outer_cn", "canny", None)]] * 2
    assert [c["controlnet"] for c in nested_calls()] == [[], []]
    assert not errors.reported


def test_person_pass_gets_the_multipass_unit_from_the_base_image():
    code = importlib.import_module("extensions.sd-webui-controlnet.scripts.external_code")
    outer = code.ControlNetUnit(enabled=True, module="canny", model="outer_cn")
    args = ({"enabled": True, "mask_dilate": 0, "controlnet": "pose", "controlnet_pose_from_base": True,
             "controlnet_model": "control_openpose", "controlnet_conditioning_scale": 0.7},)
    p, _ = cn_job(PROMPT, args, outer, n_iter=2)
    run(p)
    assert [c["controlnet"] for c in nested_calls()] == [[("control_openpose", "openpose_full", (64, 64, 3))]] * 2
    assert [c["controlnet"] for c in base_calls()] == [[("outer_cn", "canny", None)]] * 2  # batch 2 keeps it
    assert p.script_args[len(UI_FIELDS)] is outer  # the outer job's own units are untouched


def test_controlnet_options_without_the_extension_are_rejected(monkeypatch):
    from lib_multipass.webui import controlnet as webui_controlnet

    monkeypatch.setattr(webui_controlnet, "MODULE_NAMES", ("no.such.module",))
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "controlnet": "pose", "controlnet_pose_from_base": True},))
    run(p)
    assert processing.calls == [] and "sd-webui-controlnet" in p.extra_generation_params["Multipass error"]


def test_api_rejects_controlnet_options_without_the_extension(monkeypatch):
    from lib_multipass.webui import controlnet as webui_controlnet

    body = {"prompt": PROMPT, "alwayson_scripts": {"multipass": {"args": [{
        "controlnet": "pose", "controlnet_model": "control_openpose", "controlnet_pose_from_base": True}]}}}
    assert api.check_generation_request(json.dumps(body).encode()) is None  # the extension is there
    monkeypatch.setattr(webui_controlnet, "MODULE_NAMES", ("no.such.module",))
    error = api.check_generation_request(json.dumps(body).encode())
    assert error["field"] == "controlnet" and "sd-webui-controlnet" in error["detail"]


def test_inpaint_faces_in_the_webui_uses_the_persons_prompt(monkeypatch):
    one_face(monkeypatch)
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_dilate": 0, "inpaint_faces": True,
                                    "face_denoising_strength": 0.35, "face_min_size": 8},), restore_faces=True)
    processed = run(p)
    person, face = nested_calls()
    assert face["denoise"] == 0.35 and face["prompt"] == person["prompt"] and face["loras"] == ["ohwx"]
    assert face["mask"][30, 28] and not face["mask"][5, 60]
    final = np.asarray(processed.images[0])
    assert np.array_equal(final, processing.FACE_RESTORATION_SAW[0])  # faces before the WebUI's restoration


def test_controlnet_failing_inside_the_person_pass_is_a_warning_not_silence(monkeypatch):
    controlnet = importlib.import_module("extensions.sd-webui-controlnet.scripts.controlnet")
    monkeypatch.setattr(controlnet, "MODELS_ON_DISK", set())  # listed, but gone from disk
    args = ({"enabled": True, "mask_dilate": 0, "controlnet": "pose", "controlnet_pose_from_base": True,
             "controlnet_model": "control_openpose"},)
    p, _ = cn_job(PROMPT, args, None)
    processed = run(p)
    assert len(nested_calls()) == 1 and errors.reported  # the WebUI logged it and went on
    assert "ControlNet failed in the person pass (model not found: control_openpose)" in processed.infotexts[0]
    assert tuple(np.asarray(processed.images[0])[32, 20]) == processing.colour("a forest, photo", 100)


def test_unit_count_change_in_the_nested_pass_leaves_the_outer_args_alone(monkeypatch):
    code = importlib.import_module("extensions.sd-webui-controlnet.scripts.external_code")
    monkeypatch.setattr(code, "UNIT_COUNT", 5)  # the setting changed since the UI was built
    args = ({"enabled": True, "mask_dilate": 0, "controlnet": "pose", "controlnet_pose_from_base": True,
             "controlnet_model": "control_openpose"},)
    p, _ = cn_job(PROMPT, args, None)
    spans = [(s.args_from, s.args_to) for s in p.scripts.alwayson_scripts]
    run(p)
    assert [(s.args_from, s.args_to) for s in p.scripts.alwayson_scripts] == spans
    assert nested_calls()[0]["controlnet"] == [("control_openpose", "openpose_full", (64, 64, 3))]


def test_the_jobs_json_holds_no_functions_after_the_job():
    """Forge Classic's Processed.js() is json.dumps without a fallback (1.10 writes functions as
    null): the per-image infotext values are written into every infotext, then nulled."""
    p, _, _, _ = job(PROMPT.replace("ohwx:0.8", "missing:0.8"))  # a warning: a per-image value
    processed = run(p)
    assert "LoRA 'missing' not found" in processed.infotexts[0]
    written = json.loads(json.dumps(processed.extra_generation_params))
    assert written["Multipass warnings"] is None
