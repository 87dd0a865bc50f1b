"""Multipass for the AUTOMATIC1111 WebUI: the scene on the unmodified model, then each subject
in-painted with its LoRA inside a mask found in the scene. Thin: the work is in lib_multipass."""

from __future__ import annotations

import functools
import os
import sys

from modules import script_callbacks, scripts

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # the WebUI puts an extension on sys.path only while importing its scripts
    sys.path.insert(0, _ROOT)

from lib_multipass.webui import api, hooks, models, settings, xyz  # noqa: E402
from lib_multipass.webui.args import normalize_pasted  # noqa: E402


class MultipassScript(scripts.Script):
    def __init__(self):
        self.job = None
        self.last_images = {}  # tab -> the last image a multipass job made there (mask preview)

    def title(self):
        return "Multipass"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        from lib_multipass.webui.engine import current_detector, find_faces
        from lib_multipass.webui.preview import preview_mask
        from lib_multipass.webui.ui import build_ui

        preview = functools.partial(preview_mask, self.last_images, hooks.current_segmenter, find_faces, current_detector)
        components, self.infotext_fields, self.paste_field_names = build_ui(self, is_img2img, preview)
        return components

    def process(self, p, *args):
        self.job = hooks.start_job(p, args)

    def before_process_batch(self, p, *args, **kwargs):
        if self.job is not None:
            self.job.rewrite_batch(p, kwargs["batch_number"], kwargs["prompts"])

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        if self.job is not None:
            self.job.run_batch(p, pp.images, kwargs["batch_number"])

    def postprocess_image_after_composite(self, p, pp, *args):
        if self.job is not None:
            self.job.finish_image(p, pp)

    def postprocess(self, p, processed, *args):
        job, self.job = self.job, None
        if job is not None and processed.images:
            self.last_images["img2img" if self.is_img2img else "txt2img"] = processed.images[0]
        hooks.end_job(job, processed)


script_callbacks.on_ui_settings(settings.add_settings)
script_callbacks.on_infotext_pasted(normalize_pasted)
# X/Y/Z axes: now (the WebUI's own scripts, xyz_grid among them, are loaded before
# extensions'; with --nowebui the script UIs are built before on_before_ui runs) and on
# every UI (re)build; registering is idempotent
xyz.add_axes()
script_callbacks.on_before_ui(xyz.add_axes)
script_callbacks.on_app_started(api.add_routes)
script_callbacks.on_script_unloaded(models.MODELS.clear)  # Reload UI: the models go with this code
