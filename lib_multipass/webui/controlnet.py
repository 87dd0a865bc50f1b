"""sd-webui-controlnet in the nested person pass, through its public `external_code` API.

The ControlNet script hooks the shared UNet once per job in `process()`. A nested pass
that runs it (or leaves its hook on) would unhook the outer job's units or be guided by
them. So when the outer job uses ControlNet, or the person pass has a unit of its own, the
nested pass runs the ControlNet script with exactly the person's unit (or all units off),
and the outer job's units are hooked again afterwards, for every batch.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..engines.base import ControlInput
from ..errors import MultipassError

#: the ControlNet extension's preprocessor for each multipass ControlNet type
PREPROCESSORS = {"pose": "openpose_full", "canny": "canny", "depth": "depth_midas", "lineart": "lineart_realistic",
                 "tile": "tile_resample", "inpaint": "inpaint_only"}
MODULE_NAMES = ("extensions.sd-webui-controlnet.scripts.external_code",
                "extensions-builtin.sd-webui-controlnet.scripts.external_code")
NEEDED = "the ControlNet options need the sd-webui-controlnet extension (install it from the Extensions tab)"


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
    """The extension's `external_code` module, or None when it is not installed."""
    for name in _candidates():
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def make_unit(code: Any, control: ControlInput) -> Any:
    """A unit for the nested pass; the ControlNet extension crops its image like the in-paint crop."""
    return code.ControlNetUnit(
        enabled=True, module="none" if control.ready else PREPROCESSORS[control.kind], model=control.model or "None",
        weight=control.scale, image=np.asarray(control.hint.convert("RGB")), guidance_start=control.start,
        guidance_end=control.end, pixel_perfect=True,
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
    failures: list[BaseException] = []
    nested.script_args = list(nested.script_args)
    code.update_cn_script_in_processing(nested, [make_unit(code, control)] if control is not None else [])
    try:
        with _original_process_images_inner(), _reported(script, failures):
            yield
    finally:
        for each, (args_from, args_to) in spans.items():
            each.args_from, each.args_to = args_from, args_to
        if outer_active:  # the nested pass unhooked the outer job's units: hook them again
            script.process(outer, *outer.script_args[script.args_from:script.args_to])
    if failures and control is not None:
        raise MultipassError(f"ControlNet failed in the person pass ({failures[0]}); the pass is discarded")


@contextlib.contextmanager
def _reported(script: Any, failures: list[BaseException]) -> Iterator[None]:
    """Record exceptions of the ControlNet script's hooks that the WebUI's runner would swallow."""
    hooks = ("process", "before_process_batch", "process_batch", "before_process")
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
