"""The extension's own section in the WebUI's Settings tab."""

from __future__ import annotations

from .hooks import SETTINGS_DEFAULTS

SECTION = ("multipass", "Multipass")
LABELS = {
    "multipass_segmenter": "CLIPSeg weights: folder or hub id (blank: models/clipseg, else CIDAS/clipseg-rd64-refined)",
    "multipass_default_mask_prompt": "Default mask prompt",
    "multipass_keep_segmenter": "Keep the segmenter loaded between jobs",
    "multipass_save_passes": "Always save the intermediate passes (base, mask, each person)",
    "multipass_max_persons": "Max person prompts per image",
    "multipass_script_whitelist": "Always-on scripts kept in the person pass (file names, comma separated)",
    "multipass_image_folders": "Folders the server may read images from (input, mask, control, face references; "
                               "comma separated). Empty: images are sent inline (upload, base64)",
}


def add_settings() -> None:
    from modules import shared

    for key, default in SETTINGS_DEFAULTS.items():
        shared.opts.add_option(key, shared.OptionInfo(default, LABELS[key], section=SECTION))
