"""The WebUI adapter on Forge, against the stand-in's Forge parts (tests/webui_standin_forge):
host detection, the model's patcher set and LoRA hash kept across nested passes, and the
built-in ControlNet whose per-job state lives on one shared script instance."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from webui_support import (  # noqa: F401 - clean: the stand-in's state, reset for every test
    PROMPT,
    SCRIPT,
    base_calls,
    clean,
    job,
    nested_calls,
    run,
)

from lib_multipass.webui.args import UI_FIELDS
from lib_multipass.webui.host import WebUIHost, current_webui, host_from_version

FORGE_STANDIN = Path(__file__).resolve().parent / "webui_standin_forge"
FORGE_MODULES = ("modules_forge", "lib_controlnet", "forge_model", "forge_controlnet")
PERSON_CN = {"enabled": True, "mask_dilate": 0, "controlnet": "pose", "controlnet_pose_from_base": True,
             "controlnet_model": "control_v11p_sd15_openpose", "controlnet_conditioning_scale": 0.7}


@pytest.fixture
def forge(monkeypatch):
    """Forge's modules importable for one test (and gone afterwards: the host is read once)."""
    monkeypatch.syspath_prepend(str(FORGE_STANDIN))
    current_webui.cache_clear()
    yield
    for name in [m for m in sys.modules if m.split(".")[0] in FORGE_MODULES]:
        del sys.modules[name]
    current_webui.cache_clear()


def forge_job(prompt, args, outer_unit=None, **kwargs):
    """A txt2img job on a Forge model, its runner holding multipass and Forge's ControlNet script."""
    from forge_controlnet import ControlNetForForgeOfficial
    from forge_model import ForgeModel
    from lib_controlnet.external_code import ControlNetUnit
    from modules import processing, scripts

    script, cn = SCRIPT.MultipassScript(), ControlNetForForgeOfficial()
    units = [outer_unit or ControlNetUnit(enabled=False), ControlNetUnit(enabled=False)]
    p = processing.StableDiffusionProcessingTxt2Img(
        prompt=prompt, negative_prompt="", seed=100, steps=4, width=64, height=64, sampler_name="Euler a",
        outpath_samples="/out", sd_model=ForgeModel(), **kwargs)
    p.scripts = scripts.ScriptRunner([(script, len(UI_FIELDS)), (cn, 2)])
    p.script_args = tuple(args) + (None,) * (len(UI_FIELDS) - len(args)) + tuple(units)
    return p, cn


def test_the_host_is_named_from_forges_version_file():
    assert host_from_version("2.0.1v1.10.1") == WebUIHost("Forge", "2.0.1v1.10.1")
    assert host_from_version("neo", "2.22") == WebUIHost("Forge Neo", "2.22")
    assert host_from_version("classic", "1.4").name == "Forge Classic"
    assert host_from_version("2.0.0dev-v1.10.1RC", reforge=True).name == "reForge"
    assert host_from_version("2.0.1v1.10.1").forge and not WebUIHost("AUTOMATIC1111", "v1.10.1").forge


def test_forge_is_detected_by_its_modules(forge):
    assert current_webui() == WebUIHost("Forge", "2.0.1v1.10.1")


def test_automatic1111_is_not_forge():
    current_webui.cache_clear()
    assert current_webui().name == "AUTOMATIC1111" and not current_webui().forge


def test_forge_job_runs_lora_only_in_the_person_pass_and_keeps_the_outer_model_state(forge):
    p, _ = forge_job(PROMPT, ({"enabled": True, "mask_dilate": 0},), n_iter=2)
    processed = run(p)
    assert [c["forge"][0] for c in base_calls()] == [(), ()]
    assert [c["forge"][0] for c in nested_calls()] == [("ohwx",), ("ohwx",)]
    model = p.sd_model  # after the person pass, the outer job's own LoRA state again
    assert model.current_lora_hash == str([]) and model.forge_objects_after_applying_lora.loras == ()
    assert model.forge_objects.loras == ()
    assert "Multipass error" not in processed.infotexts[0]
    assert [params.get("Forge job") for params in (p.extra_generation_params,)] == ["a forest BRE"]


def test_forge_unknown_lora_runs_no_person_pass_and_keeps_the_base(forge):
    """Forge's LoRA loading fails halfway on an unknown name and would sample with the previous set."""
    p, _ = forge_job(PROMPT.replace("ohwx:0.8", "missing:0.8"), ({"enabled": True},))
    processed = run(p)
    assert len(base_calls()) == 1 and nested_calls() == []
    assert "LoRA 'missing' not found" in processed.infotexts[0]


def test_forge_controlnet_outer_units_stay_out_of_the_person_pass_and_on_for_later_batches(forge):
    from lib_controlnet.external_code import ControlNetUnit

    outer = ControlNetUnit(enabled=True, module="canny", model="outer_cn [00000000]")
    p, cn = forge_job(PROMPT, ({"enabled": True, "mask_dilate": 0},), outer, n_iter=2)
    run(p)
    assert [c["forge"][1] for c in base_calls()] == [[("outer_cn [00000000]", "canny", "NoneType")]] * 2
    assert [c["forge"][1] for c in nested_calls()] == [[], []]


def test_forge_person_pass_runs_its_own_unit_on_a_copy_of_the_shared_script(forge):
    from lib_controlnet.external_code import ControlNetUnit
    from modules import errors

    outer = ControlNetUnit(enabled=True, module="canny", model="outer_cn [00000000]")
    p, cn = forge_job(PROMPT, (PERSON_CN,), outer, n_iter=2)
    spans = [(s.args_from, s.args_to) for s in p.scripts.alwayson_scripts]
    run(p)
    person_unit = ("control_v11p_sd15_openpose [cab727d4]", "openpose_full", (64, 64, 3))
    assert [c["forge"][1] for c in nested_calls()] == [[person_unit]] * 2  # Forge 2: the hint as an array
    # the shared instance's state is the outer job's: batch 2 found its unit (a KeyError otherwise)
    assert [c["forge"][1] for c in base_calls()] == [[("outer_cn [00000000]", "canny", "NoneType")]] * 2
    assert [(s.args_from, s.args_to) for s in p.scripts.alwayson_scripts] == spans
    assert p.script_args[len(UI_FIELDS)] is outer and not errors.reported


@pytest.mark.parametrize("version,release,hint", [("classic", "1.4", "dict"), ("neo", "2.27", (64, 64, 3))])
def test_the_hint_is_an_image_and_mask_pair_on_classic_an_array_on_neo(forge, monkeypatch, version, release, hint):
    import modules_forge.forge_version as forge_version

    monkeypatch.setattr(forge_version, "version", version, raising=False)
    monkeypatch.setattr(forge_version, "release", release, raising=False)
    current_webui.cache_clear()
    p, _ = forge_job(PROMPT, ({**PERSON_CN, "controlnet_model": "control_v11p_sd15_openpose [cab727d4]"},))
    run(p)
    assert nested_calls()[0]["forge"][1] == [("control_v11p_sd15_openpose [cab727d4]", "openpose_full", hint)]


def test_forge_controlnet_failing_in_the_person_pass_is_said_and_the_base_kept(forge, monkeypatch):
    import forge_controlnet
    from modules import processing

    monkeypatch.setattr(forge_controlnet, "LOADABLE", set())  # listed, but gone from disk
    p, _ = forge_job(PROMPT, (PERSON_CN,))
    processed = run(p)
    assert "ControlNet failed in the person pass (ControlNet model not found" in processed.infotexts[0]
    base = processing.colour("a forest, photo", 100)
    assert tuple(np.asarray(processed.images[0])[32, 20]) == base  # the base image survives


def test_forge_classic_processing_without_a_scheduler_field(forge, monkeypatch):
    """Forge Classic's processing classes are 1.7's: no `scheduler` field (a TypeError if given)."""
    import inspect

    from modules import processing

    class OlderImg2Img(processing.StableDiffusionProcessingImg2Img):  # named as the WebUI's in the calls
        def __init__(self, **kwargs):
            if "scheduler" in kwargs:
                raise TypeError("__init__() got an unexpected keyword argument 'scheduler'")
            super().__init__(**kwargs)

    fields = inspect.signature(processing.StableDiffusionProcessingImg2Img).parameters.values()
    OlderImg2Img.__signature__ = inspect.Signature([f for f in fields if f.name != "scheduler"])
    OlderImg2Img.__name__ = "StableDiffusionProcessingImg2Img"
    monkeypatch.setattr(processing, "StableDiffusionProcessingImg2Img", OlderImg2Img)
    p, _ = forge_job(PROMPT, ({"enabled": True, "mask_dilate": 0},))
    processed = run(p)
    assert [c["forge"][0] for c in nested_calls()] == [("ohwx",)]
    assert "Multipass error" not in processed.infotexts[0] and "Multipass warnings" not in processed.infotexts[0]


def test_forge_controlnet_models_come_from_its_global_state(forge):
    from lib_controlnet import global_state

    from lib_multipass.webui.controlnet import installed_models, needed

    assert installed_models() == ["control_v11p_sd15_openpose [cab727d4]", "outer_cn [00000000]"]
    assert global_state.scans and "Forge's built-in ControlNet" in needed()
