"""X/Y/Z plot axes: each value goes into the multipass options of its own cell only.

A cell is a copy of `p`; the axis writes the options, as one API-style dict, into that
copy's slice of `script_args`, so nothing leaks between cells.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..options import option_specs
from .args import options_from_args

TITLE = "Multipass"
#: the Python type the X/Y/Z script parses an axis value with, by option kind
AXIS_TYPES: dict[str, type] = {"float": float, "int": int}


def axes() -> list[tuple[str, str, type, Callable[[], list[str]] | None]]:
    """(axis label, option name, value type, choices) of every option declared with an axis."""
    out: list[tuple[str, str, type, Callable[[], list[str]] | None]] = []
    for name, spec in option_specs().items():
        if spec.axis is not None:
            choices = (lambda: ["True", "False"]) if spec.kind == "bool" else None
            out.append((f"[Multipass] {spec.axis}", name, AXIS_TYPES.get(spec.kind, str), choices))
    return out


def set_option(p, name: str, value: Any) -> None:
    """Write one option into this cell's multipass args (turning multipass on)."""
    script = next(s for s in p.scripts.alwayson_scripts if s.title() == TITLE)
    args = list(p.script_args)
    current = options_from_args(args[script.args_from:script.args_to]).to_dict()
    current.update({"enabled": True, name: value})
    width = script.args_to - script.args_from
    args[script.args_from:script.args_to] = [current] + [None] * (width - 1)
    p.script_args = tuple(args)


def axis_apply(name: str) -> Callable[[Any, Any, Any], None]:
    def apply(p, value, values):
        set_option(p, name, value)

    return apply


def add_axes() -> None:
    """Register the axes with the X/Y/Z plot script (before the UI is built; once)."""
    from modules import scripts

    found = [d.module for d in scripts.scripts_data if d.script_class.__module__ in ("xyz_grid.py", "xyz_grid")]
    if not found:
        return
    xyz_grid = found[0]
    present = {axis.label for axis in xyz_grid.axis_options}
    for label, name, kind, choices in axes():
        if label not in present:
            xyz_grid.axis_options.append(xyz_grid.AxisOption(label, kind, axis_apply(name), choices=choices))
