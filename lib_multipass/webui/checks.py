"""Everything about a WebUI job that can be checked before any pass: the options, every
prompt, the main settings, the person sampler (the WebUI would silently swap an unknown one
for DPM++ 2M), the ControlNet model (sd-webui-controlnet would fail inside the nested pass),
the number of persons and the image inputs.

The same checks serve the API middleware (HTTP 422 naming the field) and the `process`
hook (the UI and X/Y/Z: nothing is generated, `Multipass error` says why).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MultipassError, OptionsError
from ..finish import grading_lut
from ..images import is_inline, open_image
from ..options import LANCZOS, MultipassOptions
from ..plan import Generation, Plan, make_plan
from ..prompt import parse

IMAGE_OPTIONS = {"input_image": "input image", "mask_image": "mask image", "controlnet_image": "control image"}


@dataclass(frozen=True)
class Host:
    """What the running WebUI offers (read once per check; tests pass their own)."""

    samplers: Mapping[str, str]  # lower-case name or alias -> the WebUI's sampler name
    schedulers: Sequence[str]  # scheduler labels a sampler name may end with ("DPM++ 2M Karras")
    controlnet_models: Sequence[str] | None  # None: sd-webui-controlnet is not installed
    max_persons: int
    folders: tuple[Path, ...] = ()  # where server paths may point (Settings); none: base64 only
    upscalers: Sequence[str] = ("Lanczos",)  # the WebUI's upscaler names


def current_host() -> Host:
    """The running WebUI's samplers, ControlNet models and settings."""
    from modules import sd_samplers

    from .controlnet import installed_models
    from .settings import setting

    try:
        from modules import sd_schedulers

        schedulers = [s.label for s in sd_schedulers.schedulers]
    except ImportError:
        schedulers = []
    from modules import shared

    models = installed_models()
    folders = [f.strip() for f in re.split(r"[\n,;]", str(setting("multipass_image_folders"))) if f.strip()]
    return Host({**sd_samplers.samplers_map, **{name.lower(): name for name in sd_samplers.all_samplers_map}},
                schedulers, models, int(setting("multipass_max_persons")),
                (Path(shared.models_path) / "insightface", *map(Path, folders)),
                tuple(u.name for u in shared.sd_upscalers))


def resolve_sampler(name: str, host: Host) -> str | None:
    """The WebUI's own name for sampler `name` (an alias, any case, maybe with a scheduler
    suffix such as "DPM++ 2M Karras", which the WebUI splits itself); None if unknown."""
    found = host.samplers.get(name.strip().lower())
    if found is not None:
        return found
    for scheduler in host.schedulers:
        if name.lower().endswith(" " + scheduler.lower()):
            base = host.samplers.get(name[: -len(scheduler) - 1].strip().lower())
            return f"{base} {scheduler}" if base else None
    return None


def resolve_controlnet_model(name: str | None, host: Host) -> str:
    """The installed ControlNet model `name` means ("name" or "name [hash]")."""
    models = host.controlnet_models or []
    listing = ", ".join(models[:20]) or "none installed (put them in models/ControlNet)"
    if not name:
        raise OptionsError(f"`controlnet_model` is needed with `controlnet`; installed models: {listing}",
                           "controlnet_model")
    for model in models:
        if name in (model, model.split(" [")[0]):
            return model
    raise OptionsError(f"`controlnet_model` {name!r} is not installed; installed models: {listing}",
                       "controlnet_model")


def check_options(options: MultipassOptions, host: Host) -> MultipassOptions:
    """The options with host names resolved; OptionsError naming the field otherwise."""
    changes: dict[str, Any] = {}
    if options.person_sampler is not None:
        sampler = resolve_sampler(options.person_sampler, host)
        if sampler is None:
            known = ", ".join(sorted(set(host.samplers.values())))
            raise OptionsError(f"`person_sampler` {options.person_sampler!r} is not a sampler of this WebUI; "
                               f"use one of: {known}", "person_sampler")
        changes["person_sampler"] = sampler  # the WebUI itself knows exact names only
    if options.controlnet is not None:
        if host.controlnet_models is None:
            from .controlnet import needed

            raise OptionsError(needed(), "controlnet")
        changes["controlnet_model"] = resolve_controlnet_model(options.controlnet_model, host)
    for name in (*IMAGE_OPTIONS, "face_swap_images", "face_swap_model", "face_recognition_model"):
        value = getattr(options, name)
        for source in value if isinstance(value, tuple) else [value] if value else []:
            check_server_path(name, source, host.folders)
    for name, used in (("super_resolution_upscaler", options.super_resolution > 1),
                       ("hires_upscaler", options.hires_denoising_strength is not None and options.hires_scale > 1)):
        if used and (getattr(options, name) or LANCZOS) not in host.upscalers:
            raise OptionsError(f"`{name}` {getattr(options, name)!r} is not an upscaler of this WebUI; use one of: "
                               f"{', '.join(host.upscalers)}", name)
    if options.color_grading:
        if options.color_grading.strip().lower().endswith(".cube"):
            check_server_path("color_grading", options.color_grading.strip(), host.folders)
        grading_lut(options.color_grading)  # a film look's name, or a .cube that reads
    for name, what in IMAGE_OPTIONS.items():
        source = getattr(options, name)
        if source:
            try:
                open_image(source, what)
            except MultipassError as err:
                raise OptionsError(str(err), name) from None
    return options.replace(**changes) if changes else options


def check_server_path(name: str, source: str, folders: Sequence[Path]) -> None:
    """A server path must lie inside one of `folders` (links resolved): a client may not make
    the server open any file it names. Inline images are always fine."""
    if is_inline(source):
        return
    path = Path(source).expanduser().resolve()
    if any(path == folder.resolve() or folder.resolve() in path.parents for folder in folders):
        return
    raise OptionsError(
        f"`{name}`: {source!r} is a server path outside the allowed folders; send the image itself "
        "(base64 or a data URL, or the upload box in the UI), or list its folder in Settings > Multipass > "
        "'Folders the server may read images from'", name)


def check_plans(plans: Sequence[Plan], host: Host) -> None:
    """Limits that need the whole job: the number of persons."""
    persons = max((len(plan.persons) for plan in plans), default=0)
    if persons > host.max_persons:
        raise OptionsError(f"{persons} person prompts, but the setting 'Max person prompts per image' allows "
                           f"{host.max_persons}; use fewer BREAK segments or raise the setting", "prompt")


def _number(body: Mapping[str, Any], name: str, default: Any, cast: type) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise OptionsError(f"`{name}` must be a number, got {value!r}", name)
    try:
        return cast(float(value)) if cast is int and float(value).is_integer() else cast(value)
    except (TypeError, ValueError):
        raise OptionsError(f"`{name}` must be a number, got {value!r}", name) from None


def check_request(body: Mapping[str, Any], options: MultipassOptions, host: Host) -> None:
    """A txt2img/img2img API request with multipass on: prompts, main settings, options, persons."""
    prompt, negative = body.get("prompt", ""), body.get("negative_prompt", "")
    for name, text in (("prompt", prompt), ("negative_prompt", negative)):
        if not isinstance(text, str):
            raise OptionsError(f"`{name}` must be text, got {type(text).__name__}", name)
    options = check_options(options, host)
    seed = _number(body, "seed", -1, int)
    generation = Generation(
        seed=seed % 2**32 if seed >= 0 else 0, steps=_number(body, "steps", 50, int),
        cfg_scale=_number(body, "cfg_scale", 7.0, float), width=_number(body, "width", 512, int),
        height=_number(body, "height", 512, int), sampler=str(body.get("sampler_name") or "Euler a"),
    )
    check_plans([make_plan(parse(prompt, negative), options, generation)], host)
