"""The script's arguments: UI components in a fixed order, or one dict from the API.

Which options have a control, and how it shows an unset value, is declared with each option
(`options.Control`); the tables here are read from those declarations."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..images import encode_png
from ..options import Control, MultipassOptions, format_value, option_specs

#: the WebUI control of each option that has one, in the order ui() returns them (declaration order)
CONTROLS: dict[str, Control] = {name: spec.control for name, spec in option_specs().items() if spec.control}
UI_FIELDS: tuple[str, ...] = tuple(CONTROLS)
#: options with no control in the accordion (API dict, infotext, prompt flags and CLI only)
API_ONLY: tuple[str, ...] = tuple(name for name in option_specs() if name not in CONTROLS)
#: options whose UI control is an upload (an image, or files): their values travel inline
UPLOADS: tuple[str, ...] = tuple(name for name, control in CONTROLS.items() if control.widget in ("image", "files"))
#: what a control shows for an option left unset ("as the main settings", "no ControlNet")
UNSET_SHOWN_AS: dict[str, Any] = {name: control.unset for name, control in CONTROLS.items() if control.unset is not None}

#: infotext key that says a job ran with multipass (its value is the version)
ENABLED_KEY = "Multipass"


def options_from_args(args: Sequence[Any]) -> MultipassOptions:
    """Options from the script's args: `({...},)` from the API, or the UI's values in order.

    The UI's "blank" number fields send 0 or None for "same as the main settings".
    """
    if not args:
        return MultipassOptions(enabled=False)
    if isinstance(args[0], Mapping):
        return MultipassOptions.from_dict(args[0])
    values = dict(zip(UI_FIELDS, args))
    for name, shown in UNSET_SHOWN_AS.items():
        if values.get(name) in (shown, ""):
            values[name] = None
    defaults = MultipassOptions()
    for name in UPLOADS:  # an empty upload box sends None
        value = values.get(name)
        values[name] = getattr(defaults, name) if value is None else inline_upload(value)
    return MultipassOptions.from_dict(values)


def inline_upload(value: Any) -> Any:
    """An upload control's value as options take it: a PIL image or uploaded files become
    inline data URLs (the server never reads a path a client named); text stays as it is."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [inline_upload(item) for item in value]
    if hasattr(value, "save"):  # a PIL image
        return "data:image/png;base64," + encode_png(value)
    name = getattr(value, "name", None)  # gradio's uploaded file (a temporary file it wrote)
    if name:
        return "data:image/png;base64," + base64.b64encode(Path(name).read_bytes()).decode("ascii")
    return value


def infotext_label(name: str) -> str:
    return ENABLED_KEY if name == "enabled" else option_specs()[name].label


def ui_value(value: Any) -> Any:
    """An option value as its UI component holds it (text for terms and lengths)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return format_value(value)


def paste_value(name: str, params: Mapping[str, str]) -> Any:
    """The UI value of option `name` from pasted infotext `params` (missing key: its default)."""
    if name == "enabled":
        return ENABLED_KEY in params
    raw = params.get(infotext_label(name))
    options = MultipassOptions() if raw is None else MultipassOptions.from_dict({name: raw})
    return ui_value(getattr(options, name))


def ui_paste_value(name: str, params: Mapping[str, str]) -> Any:
    """`paste_value` as the UI component shows it (its "same as main" and "None" choices)."""
    value = paste_value(name, params)
    return UNSET_SHOWN_AS[name] if name in UNSET_SHOWN_AS and value in (None, "") else value


def normalize_pasted(infotext: str, params: dict[str, Any]) -> None:
    """`on_infotext_pasted`: our keys in `params` become the text of the UI value they paste as.

    The controls are registered under their infotext labels (plain strings), because the
    WebUI copies fields between tabs ("Send to img2img") by matching those names; the WebUI
    then converts the text by the component's value type, so bools are "True"/"False", and
    a missing key gives the option's default (a plain job pastes as multipass off).
    """
    values = {name: ui_paste_value(name, params) for name in UI_FIELDS if name not in UPLOADS}
    for name, value in values.items():
        params[infotext_label(name)] = "" if value is None else str(value)
    for name in UPLOADS:  # an image is not in the infotext (only "inline image (N KB)"): left as it is
        params.pop(infotext_label(name), None)
