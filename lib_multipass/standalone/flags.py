"""The options as command-line flags, read from their declarations (`options.Spec.cli`).

`--mask-dilate 8` and `--mask_dilate 8` (the prompt flag's spelling) both work; a bool is
`--face-swap` / `--no-face-swap`; terms take several words (`--mask-prompt person dog`) or
`|` between them. Values are validated by the options themselves, so a bad one fails with
the same message as in a prompt or the API.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from typing import Any

from ..options import Spec, cli_names, option_specs, range_text

_METAVAR = {"int": "N", "float": "X", "length": "PX|N%", "str": "TEXT", "image": "FILE", "terms": "TERM"}


def _help(spec: Spec) -> str:
    bounds = f" ({range_text(spec)})" if range_text(spec) else ""
    return f"{spec.help}{bounds}".replace("%", "%%")  # argparse formats help with %


def _cli_options(names: Iterable[str] | None) -> list[str]:
    return list(names) if names is not None else [name for name, spec in option_specs().items() if spec.cli]


def add_option_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """One flag per CLI option (all of them, or `names`), in an argument group of their own;
    the underscore spelling of prompts (`--mask_dilate`) works too, unlisted in --help."""
    specs = option_specs()
    # `--mask-dilate -20%` is a value, not a flag (argparse knows only plain negative numbers)
    parser._negative_number_matcher = re.compile(r"^-\d+(\.\d+)?%?$")
    group = parser.add_argument_group("multipass options (also in --options JSON; a flag wins)")
    for name in _cli_options(names):
        spec = specs[name]
        kwargs: dict[str, Any] = {"dest": name}
        if spec.kind == "bool":
            kwargs.update(action=argparse.BooleanOptionalAction, default=None)
        elif spec.kind == "terms":
            kwargs.update(nargs="+", metavar=_METAVAR["terms"])
        else:
            kwargs.update(metavar="{" + ",".join(spec.choices) + "}" if spec.choices else _METAVAR[spec.kind])
        group.add_argument(*cli_names(name, spec), help=_help(spec), **kwargs)
        if "_" in name:
            group.add_argument(f"--{name}", help=argparse.SUPPRESS, **kwargs)


def flag_values(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, Any]:
    """{option: raw value} of the flags given (left-out flags are absent), for `from_dict`."""
    specs = option_specs()
    values: dict[str, Any] = {}
    for name in _cli_options(names):
        value = getattr(args, name, None)
        if value is None:
            continue
        if specs[name].kind == "terms":  # `--mask-prompt "man | hat"` and `--mask-prompt man hat` alike
            value = [term for item in value for term in str(item).split("|")]
        values[name] = value
    return values
