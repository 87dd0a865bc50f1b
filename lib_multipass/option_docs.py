"""The options described for people and clients, from their declarations: README's table
(`python -m lib_multipass options`) and a JSON schema (`options --json`, the WebUI's
`GET /multipass/v1/options`)."""

from __future__ import annotations

from typing import Any

from .options import MultipassOptions, Spec, cli_names, format_value, option_specs, range_text, to_json

_JSON_TYPES = {"bool": "boolean", "int": "integer", "float": "number", "str": "string", "image": "string",
               "choice": "string", "length": ["integer", "string"], "terms": ["array", "string"]}


def value_text(spec: Spec) -> str:
    """What a value may be, in a few words."""
    if spec.choices:
        return ", ".join(spec.choices)
    if range_text(spec):
        return range_text(spec)
    return {"bool": "true/false", "length": "px, or % of the short side", "terms": "terms, \\| between",
            "image": "file or base64", "str": "text"}.get(spec.kind, spec.kind)


def surfaces(name: str, spec: Spec) -> str:
    """Where the option can be set besides the API dict and `--options`."""
    where = []
    if spec.flag:
        where.append(f"prompt `--{name}`")
    if spec.cli:
        flag, *alias = cli_names(name, spec)
        where.append(f"CLI `{flag}`" + "".join(f" (`{a}`)" for a in alias))
    if spec.control:
        where.append(f"UI {spec.control.tab or 'top row'}")
    if spec.axis:
        where.append(f"X/Y/Z `{spec.axis}`")
    return ", ".join(where)


def markdown_table() -> str:
    """README's table of every option."""
    defaults = MultipassOptions()
    rows = ["| option | value | default | set it by | meaning |", "|---|---|---|---|---|"]
    for name, spec in option_specs().items():
        default = getattr(defaults, name)
        shown = "–" if default in (None, ()) else str(default).lower() if isinstance(default, bool) else format_value(default)
        rows.append(f"| `{name}` | {value_text(spec)} | {shown} | {surfaces(name, spec)} | {spec.help} |")
    return "\n".join(rows) + "\n"


def json_schema() -> dict[str, Any]:
    """A JSON schema of the API's options dict (`alwayson_scripts.multipass.args[0]`)."""
    defaults = MultipassOptions()
    properties: dict[str, Any] = {}
    for name, spec in option_specs().items():
        kind: Any = _JSON_TYPES[spec.kind]
        if spec.optional:
            kind = [*(kind if isinstance(kind, list) else [kind]), "null"]
        item: dict[str, Any] = {"type": kind, "default": to_json(getattr(defaults, name)), "description": spec.help,
                                "title": spec.label}
        if spec.lo is not None:
            item["minimum"], item["maximum"] = spec.lo, spec.hi
        if spec.choices:
            item["enum"] = [*spec.choices, *([None] if spec.optional else [])]
        properties[name] = item
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Multipass options",
            "type": "object", "additionalProperties": False, "properties": properties}
