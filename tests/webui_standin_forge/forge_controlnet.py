"""extensions-builtin/sd_forge_controlnet/scripts/controlnet.py, reduced to its per-job state:
`process` fills `current_params` on the one shared instance; `process_before_every_sampling`
reads it back by unit index (a KeyError when another job replaced it) and adds each unit to the
sampling's patcher set; `postprocess` empties it."""

from lib_controlnet import global_state
from lib_controlnet.external_code import ControlNetUnit
from modules import scripts

LOADABLE = set(global_state.ON_DISK)  # what loads (a test removes a listed file)


class ControlNetForForgeOfficial(scripts.Script):
    filename = "/forge/extensions-builtin/sd_forge_controlnet/scripts/controlnet.py"

    def __init__(self):
        self.current_params = {}

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def get_enabled_units(self, units):
        units = [ControlNetUnit.from_dict(u) if isinstance(u, dict) else u for u in units]
        return [u for u in units if u is not None and u.enabled]

    def process(self, p, *args):
        self.current_params = {}
        for i, unit in enumerate(self.get_enabled_units(args)):
            if unit.model not in global_state.controlnet_names or unit.model not in LOADABLE:
                raise RuntimeError(f"ControlNet model not found: {unit.model}")
            self.current_params[i] = (unit.model, unit.module, getattr(unit.image, "shape", type(unit.image).__name__))

    def process_before_every_sampling(self, p, *args, **kwargs):
        for i, _ in enumerate(self.get_enabled_units(args)):
            p.sd_model.forge_objects.controls.append(self.current_params[i])

    def postprocess(self, p, processed, *args):
        self.current_params = {}
