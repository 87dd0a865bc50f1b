"""The accordion in txt2img/img2img (gradio 3.41, the WebUI's), grouped as ADetailer groups its
controls: Mask, Person pass, Faces, ControlNet. Builds components; the only events are the
mask preview's (the plan summary is fetched by javascript/multipass.js as the user types)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..faces.swap import RECOGNIZER_FILE, SWAPPER_FILE
from ..options import Control, Spec, option_specs
from .args import CONTROLS, UI_FIELDS, infotext_label, ui_paste_value
from .controlnet import external_code, installed_models
from .preview import MASK_CONTROLS
from .summary import summary_html


def controlnet_models() -> list[str]:
    return installed_models() or []


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
        return "<small>No ControlNet extension: install sd-webui-controlnet (Forge: enable its built-in one).</small>"
    if not models:
        return "<small>No ControlNet model found: put them in <code>models/ControlNet</code>.</small>"
    return f"<small>{len(models)} ControlNet model(s) installed.</small>"


TABS = ("Mask", "Person pass", "Faces", "ControlNet", "Finish")


def make_control(gr: Any, spec: Spec, control: Control, value: Any, elem_id: str,
                 listings: dict[str, list[str]]) -> Any:
    """The gradio widget of one option, from its declaration."""
    if control.widget == "checkbox":
        return gr.Checkbox(value=bool(value), label=control.label, elem_id=elem_id)
    if control.widget == "slider":
        lo = min(spec.lo or 0, control.unset) if isinstance(control.unset, (int, float)) else spec.lo
        hi = control.top if control.top is not None else spec.hi
        return gr.Slider(lo, hi, value=value, step=control.step, label=control.label, elem_id=elem_id)
    if control.widget == "text":
        return gr.Textbox(value=value, label=control.label, lines=1, max_lines=1, elem_id=elem_id)
    if control.widget == "dropdown":
        offered = listings[control.listing] if control.listing else list(spec.choices)
        # a listing's pasted or saved value may not be in this WebUI's list: gradio 4 (Forge) refuses
        # such a value unless told; the job's checks name what is wrong with it
        return gr.Dropdown([control.unset, *offered], value=value, label=control.label, elem_id=elem_id,
                           allow_custom_value=bool(control.listing))
    if control.widget == "files":
        return gr.File(label=control.label, file_count="multiple", file_types=["image"], elem_id=elem_id)
    return gr.Image(label=control.label, type="pil", source="upload", image_mode="RGBA" if control.rgba else "RGB",
                    elem_id=elem_id, height=160)


def build_ui(script: Any, is_img2img: bool, preview_mask: Callable[..., Any] | None = None) -> tuple[list, list, list]:
    """(components in UI_FIELDS order, infotext_fields, paste_field_names).

    Every option control comes from its declaration (`options.Control`: tab, row, widget);
    written here are only the tabs' extras: the mask preview and the models' status lines."""
    import gradio as gr
    from modules import sd_samplers, shared

    tab = "img2img" if is_img2img else "txt2img"
    specs = option_specs()
    cn_models = controlnet_models()
    listings = {"samplers": [s.name for s in sd_samplers.all_samplers], "controlnet_models": cn_models,
                "upscalers": [u.name for u in shared.sd_upscalers if u.name not in ("None", "Lanczos")]}

    def eid(name: str) -> str:
        return f"multipass_{tab}_{name}"

    by_name: dict[str, Any] = {}

    def controls(where: str, group: str = "") -> None:
        """The declared controls of one tab (or one collapsed group of it), row by row; each
        starts at what pasting a plain job's infotext gives (the defaults, multipass off)."""
        chosen = {name: c for name, c in CONTROLS.items() if c.tab == where and c.group == group}
        for row in sorted({c.row for c in chosen.values()}):
            with gr.Row():
                for name, control in chosen.items():
                    if control.row == row:
                        by_name[name] = make_control(gr, specs[name], control, ui_paste_value(name, {}), eid(name),
                                                     listings)

    def groups(where: str) -> list[str]:
        return list(dict.fromkeys(c.group for c in CONTROLS.values() if c.tab == where and c.group))

    preview: dict[str, Any] = {}
    with gr.Accordion("Multipass", open=False, elem_id=f"multipass_{tab}", elem_classes=["multipass"]):
        controls("")
        gr.HTML(value=summary_html(""), elem_id=eid("plan"), elem_classes=["multipass-plan-box"])
        with gr.Tabs(elem_id=eid("tabs")):
            for where in TABS:
                visible = where != "ControlNet" or external_code() is not None
                with gr.Tab(where, elem_id=eid(f"tab_{where.split()[0].lower()}"), visible=visible):
                    controls(where)
                    for group in groups(where):
                        with gr.Accordion(group, open=False, elem_id=eid(f"{where.lower()}_more")):
                            controls(where, group)
                            if where == "Mask":
                                preview = _mask_preview(gr, eid)
                    if where == "Faces":
                        gr.HTML(value=face_models_status(shared.models_path), elem_id=eid("face_models"))
                    if where == "ControlNet":
                        gr.HTML(value=controlnet_status(cn_models), elem_id=eid("controlnet_models"))
    if preview_mask is not None and preview:
        inputs = [preview["source"], *(by_name[n] for n in MASK_CONTROLS)]
        preview["button"].click(fn=lambda *values: preview_mask(tab, *values), inputs=inputs,
                                outputs=[preview["shown"], preview["note"]], show_progress=False)
    components = [by_name[name] for name in UI_FIELDS]
    # plain label strings: the WebUI matches them between tabs ("Send to img2img") and pastes
    # infotext under them, after `args.normalize_pasted` turned our keys into UI values
    labels = [infotext_label(name) for name in UI_FIELDS]
    return components, list(zip(components, labels)), labels


def _mask_preview(gr: Any, eid: Callable[[str], str]) -> dict[str, Any]:
    """The mask preview: an image to try the mask controls on, the mask shown, a button."""
    with gr.Row():
        source = gr.Image(label="Preview on (blank: the last image made here)", type="pil", source="upload",
                          elem_id=eid("preview_source"), height=160)
        shown = gr.Image(label="Mask preview", interactive=False, elem_id=eid("preview_mask"), height=160)
    with gr.Row():
        button = gr.Button("Preview mask", elem_id=eid("preview_button"), size="sm")
        note = gr.HTML(elem_id=eid("preview_note"))
    return {"source": source, "shown": shown, "button": button, "note": note}
