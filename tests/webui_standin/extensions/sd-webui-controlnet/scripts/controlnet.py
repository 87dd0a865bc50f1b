"""sd-webui-controlnet's always-on script, reduced to what matters to a nested pass: process()
unhooks the previous UnetHook and hooks the shared UNet with the enabled units; postprocess()
unhooks. The hook is `processing.UNET_HOOK` (what the sampler stand-in records)."""

from modules import processing, scripts

MODELS_ON_DISK = {"control_v11p_sd15_openpose [cab727d4]", "control_openpose", "outer_cn"}


class ControlNetScript(scripts.Script):
    filename = "/webui/extensions/sd-webui-controlnet/scripts/controlnet.py"

    def __init__(self):
        self.latest_network = None

    def title(self):
        return "ControlNet"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *units):
        if self.latest_network is not None:
            processing.UNET_HOOK.clear()  # latest_network.restore()
            self.latest_network = None
        enabled = [u for u in units if u is not None and u.enabled]
        for unit in enabled:
            if unit.model not in MODELS_ON_DISK:  # build_control_model
                raise RuntimeError(f"model not found: {unit.model}")
        if enabled:
            processing.UNET_HOOK[:] = [(u.model, u.module, getattr(u.image, "shape", None)) for u in enabled]
            self.latest_network = list(processing.UNET_HOOK)

    def postprocess(self, p, processed, *units):
        processing.UNET_HOOK.clear()
        self.latest_network = None
