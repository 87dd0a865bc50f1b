"""Every option reaches every surface it should, from its one declaration in
`lib_multipass/options.py` (type, default, range, infotext label, help, prompt flag, CLI flag,
WebUI control, X/Y/Z axis): the UI controls, CLI flags, X/Y/Z axes, API schema and README table
are read from it, and these tests fail when a surface misses or misstates an option."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lib_multipass.option_docs import json_schema, markdown_table
from lib_multipass.options import MultipassOptions, option_specs
from lib_multipass.standalone.cli import build_parser
from lib_multipass.standalone.job import plan_from_args
from lib_multipass.webui.args import API_ONLY, UI_FIELDS, UPLOADS, infotext_label
from lib_multipass.webui.preview import MASK_CONTROLS
from lib_multipass.webui.xyz import axes

ROOT = Path(__file__).resolve().parents[1]
#: the script's positional args as API clients send the UI's list: a released order, kept
RELEASED_UI_ORDER = (
    "enabled", "denoising_strength", "mask_prompt", "mask_negative", "mask_invert", "mask_dilate", "mask_blur",
    "mask_threshold", "base_loras", "person_steps", "person_cfg", "person_sampler", "save_passes", "controlnet",
    "controlnet_model", "controlnet_conditioning_scale", "controlnet_start", "controlnet_end",
    "controlnet_pose_from_base", "inpaint_faces", "face_denoising_strength", "face_swap", "face_swap_images",
    "mask_image", "controlnet_image",
)
#: a value other than the default for each option, as a user types it on a command line
SAMPLE = {"bool": None, "int": "7", "float": "0.25", "terms": ["man", "hat"], "length": "-5%", "str": "euler",
          "image": "photo.png", "choice": "canny"}


def test_ui_controls_keep_the_released_positional_order_and_new_ones_append():
    assert UI_FIELDS[:len(RELEASED_UI_ORDER)] == RELEASED_UI_ORDER
    assert set(UI_FIELDS) | set(API_ONLY) == set(option_specs()) and not set(UI_FIELDS) & set(API_ONLY)
    assert set(UPLOADS) <= set(UI_FIELDS)


def test_infotext_labels_are_unique_and_ours():
    labels = [infotext_label(name) for name in option_specs()]
    assert len(set(labels)) == len(labels) and all(label.startswith("Multipass") for label in labels)


def test_xyz_axes_come_from_the_declarations_and_have_controls():
    declared = [name for name, spec in option_specs().items() if spec.axis]
    assert [name for _, name, _, _ in axes()] == declared
    assert set(declared) <= set(UI_FIELDS)


@pytest.mark.parametrize("name", [n for n, s in option_specs().items() if s.cli])
def test_every_cli_option_is_a_flag_that_sets_it(name):
    spec = option_specs()[name]
    flag = f"--{name.replace('_', '-')}"
    default = getattr(MultipassOptions(), name)
    if spec.kind == "bool":
        given = [f"--no-{name.replace('_', '-')}" if default else flag]
    else:
        sample = SAMPLE[spec.kind]
        if spec.kind == "float" and spec.lo is not None and spec.lo >= 1:
            sample = "1.5"
        if spec.kind == "int" and spec.hi is not None and spec.hi < 7:
            sample = str(int(spec.hi))  # within the range, not the default
        given = [flag, *(sample if isinstance(sample, list) else [sample])]
    args = build_parser().parse_args(["run", "--checkpoint", "m", "--out", "o", "--prompt", "a", *given])
    expected = MultipassOptions.from_dict({name: given[1:] if len(given) > 2 else given[1] if len(given) > 1
                                           else not default})
    assert getattr(args, name) is not None
    options = MultipassOptions.from_dict({k: v for k, v in vars(args).items() if k == name})
    assert getattr(options, name) == getattr(expected, name) != default


def test_cli_flags_take_the_prompt_spelling_and_old_aliases_and_win_over_options_json():
    args = build_parser().parse_args(["run", "--checkpoint", "m", "--out", "o", "--prompt", "a BREAK b",
                                      "--mask_dilate=-2", "--init-image", "p.png", "--mask-prompt", "man | hat",
                                      "--options", '{"mask_dilate": 9, "mask_blur": 3}'])
    options = plan_from_args(args)[1].options
    assert str(options.mask_dilate) == "-2" and options.mask_blur == 3 and options.input_image == "p.png"
    assert options.mask_prompt == ("man", "hat")
    off = [n for n, s in option_specs().items() if not s.cli]
    assert off == ["enabled", "save_passes"]


def test_the_mask_command_takes_every_mask_option_as_a_flag():
    args = build_parser().parse_args(["mask", "x.png", "--prompt", "man", "--out", "o", "--mask-invert",
                                      "--mask_speck", "0.01", "--mask-min-area", "0.2"])
    assert (args.mask_invert, args.mask_speck, args.mask_min_area) == (True, "0.01", "0.2")


def test_readme_table_is_the_declarations_output():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- options table: python -m lib_multipass options -->\n(.*?)<!-- end of options table -->",
                      readme, re.S)
    assert block, "README lost its options table markers"
    assert block.group(1) == markdown_table(), "README is behind the declarations: run `make readme-options`"
    assert len(block.group(1).splitlines()) == len(option_specs()) + 2


def test_api_schema_states_every_option_with_its_default_and_range():
    schema = json_schema()["properties"]
    assert list(schema) == list(option_specs())
    assert MultipassOptions.from_dict({name: item["default"] for name, item in schema.items()}) == MultipassOptions()
    for name, spec in option_specs().items():
        assert (schema[name].get("minimum"), schema[name].get("maximum")) == (spec.lo, spec.hi)
        if spec.choices:
            for choice in schema[name]["enum"]:
                MultipassOptions.from_dict({name: choice})


def test_the_page_script_and_the_mask_preview_read_real_controls():
    script = (ROOT / "javascript" / "multipass.js").read_text(encoding="utf-8")
    controls = re.search(r"var CONTROLS = \[(.*?)\];", script, re.S).group(1)
    assert set(re.findall(r'"(\w+)"', controls)) <= set(UI_FIELDS)
    assert set(MASK_CONTROLS) <= set(UI_FIELDS)
