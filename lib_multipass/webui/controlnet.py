"""ControlNet in the nested person pass: sd-webui-controlnet on AUTOMATIC1111, through its
public `external_code` API, and Forge's built-in ControlNet (`sd_forge_controlnet`).

AUTOMATIC1111: the ControlNet script hooks the shared UNet once per job in `process()`. A
nested pass that runs it (or leaves its hook on) would unhook the outer job's units or be
guided by them. So when the outer job uses ControlNet, or the person pass has a unit of its
own, the nested pass runs the ControlNet script with exactly the person's unit (or all units
off), and the outer job's units are hooked again afterwards, for every batch.

Forge: units are attached to the model's patchers before every sampling, and the patchers are
rebuilt for each, so the outer units never reach a nested pass. But the script keeps each
job's state on its one shared instance (`current_params`, read again at the outer job's next
sampling): a nested pass runs its own shallow copy of the script, with only the person's unit.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..engines.base import ControlInput
from ..errors import MultipassError
from .host import current_webui

#: the ControlNet extension's preprocessor for each multipass ControlNet type
PREPROCESSORS = {"pose": "openpose_full", "canny": "canny", "depth": "depth_midas", "lineart": "lineart_realistic",
                 "tile": "tile_resample", "inpaint": "inpaint_only"}
MODULE_NAMES = ("extensions.sd-webui-controlnet.scripts.external_code",
                "extensions-builtin.sd-webui-controlnet.scripts.external_code")
NEEDED = "the ControlNet options need the sd-webui-controlnet extension (install it from the Extensions tab)"
NEEDED_FORGE = "the ControlNet options need Forge's built-in ControlNet (sd_forge_controlnet): enable it in the Extensions tab"
FORGE_MODULES = ("lib_controlnet.external_code", "lib_controlnet.global_state")


def needed() -> str:
    return NEEDED_FORGE if current_webui().forge else NEEDED


def _candidates() -> list[str]:
    names = list(MODULE_NAMES)
    try:
        from modules import extensions

        for extension in extensions.active():
            if "sd-webui-controlnet" in extension.name:
                path = Path(extension.path)
                names.insert(0, f"{path.parent.name}.{path.name}.scripts.external_code")
    except (ImportError, AttributeError):
        pass
    return names


def external_code() -> Any | None:
    """The ControlNet extension's `external_code` module (Forge: its built-in one), or None when
    there is none."""
    if current_webui().forge:
        try:
            return importlib.import_module(FORGE_MODULES[0])
        except ImportError:
            return None
    for name in _candidates():
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def installed_models() -> list[str] | None:
    """The ControlNet models the extension offers ("name [hash]"), or None without the extension."""
    if current_webui().forge:
        try:
            state = importlib.import_module(FORGE_MODULES[1])
        except ImportError:
            return None
        state.update_controlnet_filenames()  # a folder scan, as its own refresh button does
        return [name for name in state.get_all_controlnet_names() if name != "None"]
    code = external_code()
    return [m for m in code.get_models() if m != "None"] if code is not None else None


def make_unit(code: Any, control: ControlInput) -> Any:
    """A unit for the nested pass; the ControlNet extension crops its image like the in-paint crop.
    Forge names "no preprocessor" "None". The hint is an array where the UI is gradio 4 (Forge 2,
    and Neo, which keeps Forge 2's backend: not run here), an image-and-mask pair on the gradio 3
    forks of Forge 1 (Classic, seen; reForge)."""
    host = current_webui()
    hint = np.asarray(control.hint.convert("RGB"))
    image: Any = hint
    if host.name in ("Forge Classic", "reForge"):
        image = {"image": hint, "mask": np.zeros_like(hint)}
    none = "None" if host.forge else "none"
    return code.ControlNetUnit(
        enabled=True, module=none if control.ready else PREPROCESSORS[control.kind], model=control.model or "None",
        weight=control.scale, image=image, guidance_start=control.start, guidance_end=control.end, pixel_perfect=True,
    )


@contextlib.contextmanager
def _original_process_images_inner() -> Iterator[None]:
    """ControlNet's img2img batch hijack replaces process_images_inner; nested passes use the original."""
    from modules import processing

    original = getattr(processing, "__controlnet_original_process_images_inner", None)
    if original is None:
        yield
        return
    hijacked = processing.process_images_inner
    processing.process_images_inner = original
    try:
        yield
    finally:
        processing.process_images_inner = hijacked


@contextlib.contextmanager
def controlnet_for_nested(nested, outer, control: ControlInput | None) -> Iterator[None]:
    """Run the nested pass with the person's ControlNet unit (or none); the outer units stay.

    `update_cn_script_in_processing` moves `args_from`/`args_to` of the (shared) script objects
    when the unit count changes: they are put back. The WebUI swallows an error raised in the
    ControlNet script's hooks (logged, and the pass runs unguided): such an error is caught here
    and fails the pass with a message, so it is never silent."""
    code = external_code()
    if current_webui().forge:
        with _forge_nested(code, nested, outer, control):
            yield
        return
    script = code.find_cn_script(outer.scripts) if code is not None and outer.scripts is not None else None
    if code is None or script is None:
        if control is not None:
            raise MultipassError(NEEDED)
        yield
        return
    outer_active = any(getattr(unit, "enabled", False) for unit in code.get_all_units_in_processing(outer))
    if control is None and not outer_active:
        yield
        return
    if script not in nested.scripts.alwayson_scripts:
        nested.scripts.alwayson_scripts = [*nested.scripts.alwayson_scripts, script]
        nested.scripts.callback_map = {}
    spans = {s: (s.args_from, s.args_to) for s in outer.scripts.alwayson_scripts}
    nested.script_args = list(nested.script_args)
    code.update_cn_script_in_processing(nested, [make_unit(code, control)] if control is not None else [])
    try:
        with _original_process_images_inner(), _failing_loudly(script, control is not None):
            yield
    finally:
        for each, (args_from, args_to) in spans.items():
            each.args_from, each.args_to = args_from, args_to
        if outer_active:  # the nested pass unhooked the outer job's units: hook them again
            script.process(outer, *outer.script_args[script.args_from:script.args_to])


def _forge_script(runner: Any) -> Any | None:
    """Forge's ControlNet script among the job's always-on scripts."""
    scripts = getattr(runner, "alwayson_scripts", None) or []
    return next((s for s in scripts if type(s).__name__ == "ControlNetForForgeOfficial"), None)


@contextlib.contextmanager
def _forge_nested(code: Any, nested, outer, control: ControlInput | None) -> Iterator[None]:
    """Forge: the nested runner without the shared ControlNet script (its per-job state is the
    outer job's), and with a copy of it that holds only the person's unit when there is one."""
    script = _forge_script(outer.scripts)
    runner = nested.scripts
    if runner is not None and script in runner.alwayson_scripts:  # whitelisted by hand: never the shared one
        runner.alwayson_scripts = [s for s in runner.alwayson_scripts if s is not script]
        runner.callback_map = {}
    if control is None:
        yield
        return
    if code is None or script is None or runner is None:
        raise MultipassError(NEEDED_FORGE)
    own = copy.copy(script)
    own.current_params = {}
    args = list(nested.script_args)
    own.args_from, own.args_to = len(args), len(args) + 1
    nested.script_args = [*args, make_unit(code, control)]
    runner.alwayson_scripts = [*runner.alwayson_scripts, own]
    runner.callback_map = {}
    with _failing_loudly(own, True):
        yield


@contextlib.contextmanager
def _failing_loudly(script: Any, loud: bool) -> Iterator[None]:
    """Record exceptions of the ControlNet script's hooks that the WebUI's runner would swallow
    and, when `loud` (the pass has a unit of its own), fail the pass with the first of them."""
    failures: list[BaseException] = []
    hooks = ("process", "before_process_batch", "process_batch", "before_process", "process_before_every_sampling")
    originals = {name: getattr(script, name) for name in hooks if hasattr(script, name)}

    def guard(original):
        def guarded(*args, **kwargs):
            try:
                return original(*args, **kwargs)
            except Exception as err:
                failures.append(err)
                raise

        return guarded

    for name, original in originals.items():
        setattr(script, name, guard(original))
    try:
        yield
    finally:
        for name in originals:
            delattr(script, name)  # the class's own methods show through again
    if failures and loud:
        raise MultipassError(f"ControlNet failed in the person pass ({failures[0]}); the pass is discarded")
