"""The accordion: its controls and groups, the plan summary, the mask preview."""

from __future__ import annotations

import numpy as np
from PIL import Image
from webui_support import SCRIPT, LeftHalf, clean, job, run  # noqa: F401  (puts the stand-in on sys.path)

from lib_multipass.webui.args import UI_FIELDS, UPLOADS
from lib_multipass.webui.preview import preview_mask
from lib_multipass.webui.summary import summary_html


def build(tab="txt2img"):
    script = SCRIPT.MultipassScript()
    return script, script.ui(tab == "img2img")


def test_every_option_control_has_its_name_and_uploads_are_upload_widgets():
    _, components = build()
    assert [c.elem_id for c in components] == [f"multipass_txt2img_{name}" for name in UI_FIELDS]
    kinds = {name: type(c).__name__ for name, c in zip(UI_FIELDS, components)}
    assert {kinds[name] for name in UPLOADS} <= {"Image", "File"}
    dilate = components[UI_FIELDS.index("mask_dilate")]
    assert dilate.kwargs["lines"] == 1 and dilate.kwargs["max_lines"] == 1


def test_summary_one_line_per_pass_with_loras_denoise_and_seed():
    html = summary_html("a forest BREAK photo BREAK ohwx man <lora:ohwx:0.8> BREAK sks woman <lora:sks:1>", "",
                        {"enabled": True, "denoising_strength": 0.6}, (768, 512))
    assert html.count("<li>") == 3 and html.count("768x512") == 3
    assert "no LoRA" in html and "ohwx:0.8 · denoise 0.6" in html and "image seed + 2" in html
    assert "problem" not in html
    html = summary_html("a forest BREAK ohwx man <lora:ohwx:0.8>", "",
                        {"enabled": True, "hires_denoising_strength": 0.3, "hires_scale": 1.5}, (512, 512))
    assert "<b>harmonize</b> · ohwx:0.8 · denoise 0.3 · 768x768 · image seed + 2" in html


def test_summary_says_problems_in_words_and_escapes_the_prompt():
    assert "BREAK" in summary_html("")  # an empty prompt shows how to write one
    bad = summary_html("a BREAK b --mask_blur lots <script>", "", {})
    assert "mask_blur" in bad and "<script>" not in bad
    off = summary_html("scene <lora:style:1> BREAK man", "", {"enabled": False})
    assert "Multipass is off" in off and "style" in off and "no &lt;lora" in off
    long = summary_html("x " * 200 + "BREAK man <lora:a:1>", "", {"enabled": True})
    assert "…" in long


def NO_DETECTOR():
    return None


def NO_FACES(image, box=None):
    return []


def test_preview_mask_over_an_upload_or_the_last_image():
    values = ("person", "", 0.4, "0", 0, False, None)
    image, note = preview_mask({}, LeftHalf, NO_FACES, NO_DETECTOR, "txt2img", None, *values)
    assert image is None and "Upload" in note
    photo = Image.new("RGB", (80, 64), (10, 20, 30))
    image, note = preview_mask({}, LeftHalf, NO_FACES, NO_DETECTOR, "txt2img", photo, *values)
    assert image.size == (80, 64) and "1 subject(s)" in note
    assert np.asarray(image)[32, 20].tolist() != [10, 20, 30] and np.asarray(image)[32, 70].tolist() == [10, 20, 30]
    image, _ = preview_mask({"txt2img": photo}, LeftHalf, NO_FACES, NO_DETECTOR, "txt2img", None, *values)
    assert image is not None
    _, note = preview_mask({}, LeftHalf, NO_FACES, NO_DETECTOR, "txt2img", photo, "person", "", 0.4, "big", 0, False, None)
    assert "mask_dilate" in note


def test_the_last_image_of_a_job_is_kept_for_the_preview():
    p, script, _, _ = job("a forest BREAK ohwx man <lora:ohwx:1>")
    run(p)
    assert script.last_images["txt2img"].size == (64, 64)


def test_each_control_is_built_as_declared_in_its_tab():
    from lib_multipass.options import option_specs

    _, components = build()
    for name, component in zip(UI_FIELDS, components):
        control = option_specs()[name].control
        widget = {"checkbox": "Checkbox", "slider": "Slider", "text": "Textbox", "dropdown": "Dropdown",
                  "image": "Image", "files": "File"}[control.widget]
        assert type(component).__name__ == widget and component.label == control.label, name
        tabs = [block.label for block in component.ancestors() if type(block).__name__ == "Tab"]
        assert tabs == ([control.tab] if control.tab else []), name
        if control.widget == "dropdown":
            assert component.choices[0] == control.unset == component.value, name
        if control.widget == "slider":
            assert component.minimum <= component.value <= component.maximum and component.step == control.step, name
    assert components[UI_FIELDS.index("enabled")].value is False  # a new tab starts with multipass off
    assert components[UI_FIELDS.index("mask_image")].kwargs["image_mode"] == "RGBA"
