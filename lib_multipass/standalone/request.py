"""`run --request FILE`: an Astria-style prompt request (JSON) as this job's arguments.

Astria users keep their requests: the fields map onto the CLI's settings and options; a
field this engine cannot honour is refused with what to do instead, never dropped quietly
(an image made without the asked super resolution would look like a bug).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import MultipassError

#: request field -> `run` argument (generation settings)
SETTINGS = {"text": "prompt", "prompt": "prompt", "negative_prompt": "negative", "num_images": "num_images",
            "seed": "seed", "steps": "steps", "cfg_scale": "cfg", "w": "width", "h": "height", "ar": "ar",
            "scheduler": "sampler"}
#: request field -> option
OPTIONS = {"controlnet": "controlnet", "controlnet_txt2img": "controlnet_txt2img", "input_image": "input_image",
           "mask_image": "mask_image", "inpaint_faces": "inpaint_faces", "color_grading": "color_grading",
           "use_lpw": "use_lpw", "denoising_strength": "base_denoising_strength", "film_grain": "film_grain",
           "super_resolution": "super_resolution", "hires_denoising_strength": "hires_denoising_strength",
           "face_correct": "face_correct"}
#: Astria's on/off fields as this engine's amounts (off, on)
ON_OFF = {"film_grain": (0.0, 0.3), "super_resolution": (1, 2)}
#: on/off fields that set several options when on (hires fix: A1111's default 2x, Astria's 0.4)
SWITCHES = {"hires_fix": {"hires_denoising_strength": 0.4, "hires_scale": 2.0}}
#: fields that only ask for something when true, and what to do instead
NOT_HERE = {
    "face_swap": "face swap needs the subject's reference photos here: give --face-swap --face-swap-images FILES",
    "prompt_expansion": "prompt expansion needs a language model, which this engine does not have: write the "
                        "prompt out",
    "only_upscale": "upscaling alone is not built in the standalone engine yet",
}
IGNORED = ("callback", "tune_id", "id", "backend_version", "style")  # about Astria's service, not the image


def read_request(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise MultipassError(f"--request {str(path)!r}: cannot read it ({err.strerror or err})") from None
    except json.JSONDecodeError as err:
        raise MultipassError(f"--request {str(path)!r} is not valid JSON ({err})") from None
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # Astria's `{"prompt": {...}}` envelope
    if not isinstance(data, dict):
        raise MultipassError(f"--request {str(path)!r} must hold a JSON object of prompt fields")
    return data


def apply_request(args: argparse.Namespace, options: dict[str, Any]) -> None:
    """Fill `args` and `options` from `args.request`; what the command line gives wins."""
    if not args.request:
        return
    data = read_request(args.request)
    for field, value in sorted(data.items(), key=lambda item: item[0] in SWITCHES):  # a field given outright wins
        if field in IGNORED:
            continue
        if field in SWITCHES:
            for name, amount in SWITCHES[field].items() if value else ():
                options.setdefault(name, amount)
            continue
        if field in NOT_HERE:
            if value:
                raise MultipassError(f"--request field `{field}`: {NOT_HERE[field]}")
            continue
        if field in ("input_image_url", "mask_image_url") or (field in ("input_image", "mask_image")
                                                            and str(value).startswith(("http://", "https://"))):
            raise MultipassError(f"--request field `{field}`: this engine reads no URLs; download the image and "
                                 f"give its path as `{field.removesuffix('_url')}`")
        if field in SETTINGS:
            if getattr(args, SETTINGS[field]) is None:
                setattr(args, SETTINGS[field], value)
        elif field in OPTIONS:
            if field in ON_OFF and isinstance(value, bool):
                value = ON_OFF[field][value]
            options.setdefault(OPTIONS[field], value)
        else:
            known = ", ".join(sorted({*SETTINGS, *OPTIONS, *SWITCHES, *NOT_HERE, *IGNORED}))
            raise MultipassError(f"--request field `{field}` is not one this engine knows; known fields: {known}")
