"""sd-webui-controlnet's `scripts/external_code.py` (internal_controlnet/external_code.py, API v3):
the calls multipass uses, with their signatures; units live in the ControlNet script's slice of
p.script_args, padded with disabled units to the unit count."""

from __future__ import annotations

from typing import List, Optional

UNIT_COUNT = 3
MODELS = ["None", "control_v11p_sd15_openpose [cab727d4]", "control_openpose", "outer_cn"]  # tests may change it


def get_models(update: bool = False) -> List[str]:
    """The ControlNet models found in its folders, as "name [hash]" ("None" first)."""
    return list(MODELS)


class ControlNetUnit:
    def __init__(self, enabled=False, module="none", model="None", weight=1.0, image=None, guidance_start=0.0,
                 guidance_end=1.0, pixel_perfect=False, **kwargs):
        self.enabled, self.module, self.model, self.weight, self.image = enabled, module, model, weight, image
        self.guidance_start, self.guidance_end, self.pixel_perfect = guidance_start, guidance_end, pixel_perfect


def find_cn_script(script_runner) -> Optional[object]:
    if script_runner is None:
        return None
    for script in script_runner.alwayson_scripts:
        if script.title().lower() == "controlnet":
            return script
    return None


def get_all_units(script_runner, script_args) -> List[ControlNetUnit]:
    script = find_cn_script(script_runner)
    return list(script_args[script.args_from:script.args_to]) if script else []


def get_all_units_in_processing(p) -> List[ControlNetUnit]:
    return get_all_units(p.scripts, p.script_args)


def update_cn_script_in_processing(p, cn_units: List[ControlNetUnit], **_kwargs):
    """As update_cn_script: units padded to the unit count; the ControlNet script's args_to and
    the args_from/args_to of every later always-on script are moved by the change in width."""
    script = find_cn_script(p.scripts)
    if script is None or len(p.script_args) < script.args_from:
        return
    units = list(cn_units) + [ControlNetUnit(enabled=False) for _ in range(max(UNIT_COUNT - len(cn_units), 0))]
    args = list(p.script_args)
    diff = 0
    for each in p.scripts.alwayson_scripts:
        if each is script:
            diff = len(units) - (script.args_to - script.args_from)
            args[script.args_from:script.args_to] = units
            script.args_to = script.args_from + len(units)
        else:
            each.args_from += diff
            each.args_to += diff
    p.script_args = type(p.script_args)(args)
