"""The accordion in txt2img/img2img (gradio 3.41, the WebUI's). Builds components only: no side effects."""

from __future__ import annotations

import json
from typing import Any

from ..errors import MultipassError
from ..options import MultipassOptions, option_specs
from ..engines.webui_controlnet import external_code
from .args import NONE_CHOICE, SAME_SAMPLER, UI_FIELDS, infotext_label, ui_value


def preview(prompt: str, negative: str = "") -> str:
    """The live plan preview: the same data as `parse --json`, or the parse error."""
    from .api import parse_payload

    try:
        return json.dumps(parse_payload({"prompt": prompt, "negative_prompt": negative}), indent=1)
    except MultipassError as err:
        return json.dumps({"error": str(err)})


def controlnet_models() -> list[str]:
    code = external_code()
    return list(code.get_models()) if code is not None else []


def build_ui(script: Any, is_img2img: bool) -> tuple[list, list, list]:
    """(components in UI_FIELDS order, infotext_fields, paste_field_names)."""
    import gradio as gr
    from modules import sd_samplers

    tab = "img2img" if is_img2img else "txt2img"
    defaults = MultipassOptions()
    specs = option_specs()
    samplers = [SAME_SAMPLER] + [s.name for s in sd_samplers.all_samplers]

    def number_slider(name: str, lo: float, hi: float, step: float, value: Any, label: str):
        return gr.Slider(lo, hi, value=value, step=step, label=label, elem_id=f"multipass_{tab}_{name}")

    def text(name: str, label: str):
        return gr.Textbox(value=ui_value(getattr(defaults, name)), label=label, elem_id=f"multipass_{tab}_{name}")

    def check(name: str, label: str):
        return gr.Checkbox(value=bool(getattr(defaults, name)), label=label, elem_id=f"multipass_{tab}_{name}")

    with gr.Accordion("Multipass", open=False, elem_id=f"multipass_{tab}", elem_classes=["multipass"]):
        with gr.Row():
            enabled = gr.Checkbox(value=False, label="Enable multipass", elem_id=f"multipass_{tab}_enabled")
            save_passes = check("save_passes", "Save intermediate passes")
            base_loras = check("base_loras", "Keep base/common LoRAs in the base pass")
        with gr.Row():
            denoise = number_slider("denoising_strength", 0, 1, 0.01, defaults.denoising_strength, "Person denoise")
            threshold = number_slider("mask_threshold", 0, 1, 0.01, defaults.mask_threshold, "Mask threshold")
        with gr.Row():
            mask_prompt = text("mask_prompt", "Mask prompt (terms separated by |)")
            mask_negative = text("mask_negative", "Mask negative")
        with gr.Row():
            dilate = text("mask_dilate", "Mask dilate (px, or % of the short side; negative shrinks)")
            blur = number_slider("mask_blur", 0, 64, 1, defaults.mask_blur, "Mask blur (feather, px)")
            invert = check("mask_invert", "Invert mask")
        with gr.Row():
            steps = number_slider("person_steps", 0, 150, 1, 0, "Person steps (0: as the main steps)")
            cfg = number_slider("person_cfg", 0, 30, 0.5, 0, "Person CFG (0: as the main CFG)")
            sampler = gr.Dropdown(samplers, value=SAME_SAMPLER, label="Person sampler",
                                  elem_id=f"multipass_{tab}_person_sampler")
        with gr.Accordion("ControlNet in the person pass (sd-webui-controlnet)", open=False,
                          visible=external_code() is not None, elem_id=f"multipass_{tab}_controlnet"):
            with gr.Row():
                controlnet = gr.Dropdown([NONE_CHOICE, *specs["controlnet"].choices], value=NONE_CHOICE,
                                         label="Type (its preprocessor runs on the base image)",
                                         elem_id=f"multipass_{tab}_controlnet_type")
                cn_model = gr.Dropdown([NONE_CHOICE, *controlnet_models()], value=NONE_CHOICE, label="Model",
                                       elem_id=f"multipass_{tab}_controlnet_model")
                from_base = check("controlnet_pose_from_base", "Guide the person by the base image")
            with gr.Row():
                cn_scale = number_slider("controlnet_conditioning_scale", 0, 2, 0.05,
                                         defaults.controlnet_conditioning_scale, "Weight")
                cn_start = number_slider("controlnet_start", 0, 1, 0.01, 0.0, "Guidance start")
                cn_end = number_slider("controlnet_end", 0, 1, 0.01, 1.0, "Guidance end")
        with gr.Row():
            inpaint_faces = check("inpaint_faces", "Inpaint faces (with each person's prompt and LoRA)")
            face_denoise = number_slider("face_denoising_strength", 0, 1, 0.01, defaults.face_denoising_strength,
                                         "Face denoise")
            face_swap = check("face_swap", "Face swap (inswapper_128.onnx in models/insightface)")
            face_refs = text("face_swap_images", "Face swap reference photos: folders or files, | between")
        plan = gr.Code(value="", language="json", label="Plan preview (from the prompt above)",
                       elem_id=f"multipass_{tab}_preview", interactive=False)
    prompt_box = getattr(script, "prompt_boxes", {}).get(tab)
    if prompt_box is not None:
        prompt_box.change(fn=preview, inputs=[prompt_box], outputs=[plan], show_progress=False)

    by_name = {
        "enabled": enabled, "denoising_strength": denoise, "mask_prompt": mask_prompt, "mask_negative": mask_negative,
        "mask_invert": invert, "mask_dilate": dilate, "mask_blur": blur, "mask_threshold": threshold,
        "base_loras": base_loras, "person_steps": steps, "person_cfg": cfg, "person_sampler": sampler,
        "save_passes": save_passes, "controlnet": controlnet, "controlnet_model": cn_model,
        "controlnet_conditioning_scale": cn_scale, "controlnet_start": cn_start, "controlnet_end": cn_end,
        "controlnet_pose_from_base": from_base, "inpaint_faces": inpaint_faces,
        "face_denoising_strength": face_denoise, "face_swap": face_swap, "face_swap_images": face_refs,
    }
    components = [by_name[name] for name in UI_FIELDS]
    # plain label strings: the WebUI matches them between tabs ("Send to img2img") and pastes
    # infotext under them, after `args.normalize_pasted` turned our keys into UI values
    labels = [infotext_label(name) for name in UI_FIELDS]
    return components, list(zip(components, labels)), labels
