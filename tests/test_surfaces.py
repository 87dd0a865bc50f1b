"""Every option reaches every surface it should: a test fails when one misses an option.

Declared once in `lib_multipass/options.py` (type, default, range, infotext label, help, prompt
flag, X/Y/Z axis); the accordion lists its controls in `webui/args.UI_FIELDS` and names the
options it leaves to the API in `API_ONLY`."""

from __future__ import annotations

import re
from pathlib import Path

from lib_multipass.options import option_specs
from lib_multipass.webui.args import API_ONLY, UI_FIELDS, UPLOADS, infotext_label
from lib_multipass.webui.preview import MASK_CONTROLS
from lib_multipass.webui.xyz import axes

ROOT = Path(__file__).resolve().parents[1]


def test_every_option_has_a_control_or_is_named_api_only():
    specs = option_specs()
    assert set(UI_FIELDS) | set(API_ONLY) == set(specs)
    assert not set(UI_FIELDS) & set(API_ONLY)
    assert set(UPLOADS) <= set(UI_FIELDS)


def test_infotext_labels_are_unique_and_ours():
    labels = [infotext_label(name) for name in option_specs()]
    assert len(set(labels)) == len(labels) and all(label.startswith("Multipass") for label in labels)


def test_xyz_axes_come_from_the_declarations_and_have_controls():
    declared = [name for name, spec in option_specs().items() if spec.axis]
    assert [name for _, name, _, _ in axes()] == declared
    assert set(declared) <= set(UI_FIELDS)


def test_readme_flag_table_lists_every_prompt_flag():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `--(\w+)` \|", readme, re.M))
    assert table == {name for name, spec in option_specs().items() if spec.flag}


def test_the_page_script_and_the_mask_preview_read_real_controls():
    script = (ROOT / "javascript" / "multipass.js").read_text(encoding="utf-8")
    controls = re.search(r"var CONTROLS = \[(.*?)\];", script, re.S).group(1)
    assert set(re.findall(r'"(\w+)"', controls)) <= set(UI_FIELDS)
    assert set(MASK_CONTROLS) <= set(UI_FIELDS)


def test_cli_flags_map_to_options():
    source = (ROOT / "lib_multipass" / "cli_job.py").read_text(encoding="utf-8")
    mapped = set(re.findall(r'\("\w+", "(\w+)"\)', source)) | set(re.findall(r'values\["(\w+)"\]', source))
    assert mapped and mapped <= set(option_specs())


def test_readme_flag_table_defaults_and_ranges_match_the_declarations():
    from lib_multipass.options import MultipassOptions, format_value

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    defaults = MultipassOptions()
    for name, value, default in re.findall(r"^\| `--(\w+)` \| ([^|]+) \| ([^|]+) \|", readme, re.M):
        spec, declared = option_specs()[name], getattr(defaults, name)
        shown = default.strip().strip("`")
        if declared in (None, ()):
            assert shown == "–", name
        elif isinstance(declared, bool):
            assert shown == str(declared).lower(), name
        else:
            assert shown == format_value(declared), (name, shown, declared)
        if spec.lo is not None and spec.kind in ("int", "float"):
            assert value.strip().startswith(f"{spec.lo:g}..{spec.hi:g}"), (name, value)
