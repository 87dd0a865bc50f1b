"""The accordion in txt2img/img2img (gradio 3.41, the WebUI's), grouped as ADetailer groups its
controls: Mask, Person pass, Faces, ControlNet. Builds components; the only events are the
mask preview's (the plan summary is fetched by javascript/multipass.js as the user types)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engines.webui_controlnet import external_code
from ..faceswap import RECOGNIZER_FILE, SWAPPER_FILE
from ..options import MultipassOptions, option_specs
from .args import NONE_CHOICE, SAME_SAMPLER, UI_FIELDS, infotext_label, ui_value
from .summary import summary_html


def controlnet_models() -> list[str]:
    code = external_code()
    return [m for m in code.get_models() if m != "None"] if code is not None else []


def face_models_status(models_path: str) -> str:
    """Which face models are there, and where the missing ones go."""
    root = Path(models_path) / "insightface"
    parts, missing = [], False
    for file, role in ((SWAPPER_FILE, "face swap"), (RECOGNIZER_FILE, "face identity"), ("det_10g.onnx", "detector")):
        found = root.is_dir() and any(root.rglob(file))
        missing = missing or not found
        parts.append(f"{role} <code>{file}</code> {'✔' if found else '✘'}")
    where = f" — put missing files in <code>{root}</code>" if missing else ""
    return "<small>" + " · ".join(parts) + where + "</small>"


def controlnet_status(models: list[str]) -> str:
    if external_code() is None:
        return "<small>sd-webui-controlnet is not installed.</small>"
    if not models:
        return "<small>No ControlNet model found: put them in <code>models/ControlNet</code>.</small>"
    return f"<small>{len(models)} ControlNet model(s) installed.</small>"


def build_ui(script: Any, is_img2img: bool, preview_mask: Callable[..., Any] | None = None) -> tuple[list, list, list]:
    """(components in UI_FIELDS order, infotext_fields, paste_field_names)."""
    import gradio as gr
    from modules import sd_samplers, shared

    tab = "img2img" if is_img2img else "txt2img"
    defaults = MultipassOptions()
    specs = option_specs()
    samplers = [SAME_SAMPLER] + [s.name for s in sd_samplers.all_samplers]
    cn_models = controlnet_models()

    def eid(name: str) -> str:
        return f"multipass_{tab}_{name}"

    def slider(name: str, lo: float, hi: float, step: float, label: str, value: Any = None):
        value = getattr(defaults, name) if value is None else value
        return gr.Slider(lo, hi, value=value, step=step, label=label, elem_id=eid(name))

    def text(name: str, label: str, **kwargs):
        return gr.Textbox(value=ui_value(getattr(defaults, name)), label=label, lines=1, max_lines=1,
                          elem_id=eid(name), **kwargs)

    def check(name: str, label: str, value: bool | None = None):
        return gr.Checkbox(value=bool(getattr(defaults, name)) if value is None else value, label=label,
                           elem_id=eid(name))

    by_name: dict[str, Any] = {}
    with gr.Accordion("Multipass", open=False, elem_id=f"multipass_{tab}", elem_classes=["multipass"]):
        with gr.Row():
            by_name["enabled"] = check("enabled", "Enable multipass", value=False)
            by_name["save_passes"] = check("save_passes", "Save intermediate passes")
            by_name["base_loras"] = check("base_loras", "Keep base/common LoRAs in the base pass")
        gr.HTML(value=summary_html(""), elem_id=eid("plan"), elem_classes=["multipass-plan-box"])
        with gr.Tabs(elem_id=eid("tabs")):
            with gr.Tab("Mask", elem_id=eid("tab_mask")):
                with gr.Row():
                    by_name["mask_prompt"] = text("mask_prompt", "Mask prompt (what to in-paint; | between terms)")
                    by_name["mask_negative"] = text("mask_negative", "Mask negative (left out, e.g. clothes)")
                with gr.Row():
                    by_name["mask_threshold"] = slider("mask_threshold", 0, 1, 0.01, "Threshold")
                    by_name["mask_dilate"] = text("mask_dilate", "Dilate (px or % of the short side; - shrinks)")
                    by_name["mask_blur"] = slider("mask_blur", 0, 64, 1, "Blur (feather, px)")
                    by_name["mask_invert"] = check("mask_invert", "Invert")
                with gr.Accordion("Mask image, and a preview of the mask", open=False, elem_id=eid("mask_more")):
                    with gr.Row():
                        by_name["mask_image"] = gr.Image(label="Mask image (instead of the mask prompt)", type="pil",
                                                         source="upload", image_mode="RGBA", elem_id=eid("mask_image"),
                                                         height=160)
                        source = gr.Image(label="Preview on (blank: the last image made here)", type="pil",
                                          source="upload", elem_id=eid("preview_source"), height=160)
                        shown = gr.Image(label="Mask preview", interactive=False, elem_id=eid("preview_mask"),
                                         height=160)
                    with gr.Row():
                        button = gr.Button("Preview mask", elem_id=eid("preview_button"), size="sm")
                        note = gr.HTML(elem_id=eid("preview_note"))
            with gr.Tab("Person pass", elem_id=eid("tab_person")):
                with gr.Row():
                    by_name["denoising_strength"] = slider("denoising_strength", 0, 1, 0.01, "Person denoise")
                    by_name["person_steps"] = slider("person_steps", 0, 150, 1, "Steps (0: as the main steps)", 0)
                    by_name["person_cfg"] = slider("person_cfg", 0, 30, 0.5, "CFG (0: as the main CFG)", 0)
                    by_name["person_sampler"] = gr.Dropdown(samplers, value=SAME_SAMPLER, label="Sampler",
                                                            elem_id=eid("person_sampler"))
            with gr.Tab("Faces", elem_id=eid("tab_faces")):
                with gr.Row():
                    by_name["inpaint_faces"] = check("inpaint_faces", "Inpaint faces (each person's prompt and LoRA)")
                    by_name["face_denoising_strength"] = slider("face_denoising_strength", 0, 1, 0.01, "Face denoise")
                    by_name["face_swap"] = check("face_swap", "Face swap to the reference photos")
                by_name["face_swap_images"] = gr.File(label="Face swap reference photos", file_count="multiple",
                                                      file_types=["image"], elem_id=eid("face_swap_images"))
                gr.HTML(value=face_models_status(shared.models_path), elem_id=eid("face_models"))
            with gr.Tab("ControlNet", elem_id=eid("tab_controlnet"), visible=external_code() is not None):
                with gr.Row():
                    by_name["controlnet"] = gr.Dropdown([NONE_CHOICE, *specs["controlnet"].choices], value=NONE_CHOICE,
                                                        label="Type (its preprocessor runs on the base image)",
                                                        elem_id=eid("controlnet"))
                    by_name["controlnet_model"] = gr.Dropdown([NONE_CHOICE, *cn_models], value=NONE_CHOICE,
                                                              label="Model", elem_id=eid("controlnet_model"))
                    by_name["controlnet_pose_from_base"] = check("controlnet_pose_from_base",
                                                                 "Guide the person by the base image")
                with gr.Row():
                    by_name["controlnet_conditioning_scale"] = slider("controlnet_conditioning_scale", 0, 2, 0.05,
                                                                      "Weight")
                    by_name["controlnet_start"] = slider("controlnet_start", 0, 1, 0.01, "Guidance start")
                    by_name["controlnet_end"] = slider("controlnet_end", 0, 1, 0.01, "Guidance end")
                by_name["controlnet_image"] = gr.Image(label="Ready hint image (e.g. a pose skeleton)", type="pil",
                                                       source="upload", elem_id=eid("controlnet_image"), height=160)
                gr.HTML(value=controlnet_status(cn_models), elem_id=eid("controlnet_models"))
    if preview_mask is not None:
        inputs = [source, *(by_name[n] for n in ("mask_prompt", "mask_negative", "mask_threshold", "mask_dilate",
                                                 "mask_blur", "mask_invert", "mask_image"))]
        button.click(fn=lambda *values: preview_mask(tab, *values), inputs=inputs, outputs=[shown, note],
                     show_progress=False)
    components = [by_name[name] for name in UI_FIELDS]
    # plain label strings: the WebUI matches them between tabs ("Send to img2img") and pastes
    # infotext under them, after `args.normalize_pasted` turned our keys into UI values
    labels = [infotext_label(name) for name in UI_FIELDS]
    return components, list(zip(components, labels)), labels
