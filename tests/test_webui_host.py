"""What the real WebUI 1.10.1 does differently from a naive host, on the stand-in that mirrors
it: its own mask blur and overlay, torch's global generator, Interrupt/Skip mid-pass, the
progress bar, and copying fields between tabs by name."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from webui_support import PROMPT, SCRIPT, base_calls, clean, job, nested_calls, one_face, run  # noqa: F401

# isort: split
from modules import processing, script_callbacks, shared

from lib_multipass.webui.args import UI_FIELDS, infotext_label, normalize_pasted, options_from_args
from lib_multipass.webui.hooks import shared_segmenter  # the real one: the `clean` fixture replaces it


def passes_of(processed, index=0):
    """{name: image} of the intermediates that `save_passes` adds after the finals."""
    out = {}
    for image, text in zip(processed.images, processed.infotexts):
        if text.startswith("multipass ") and text.endswith(f"image {index + 1}"):
            out[text.split(",")[0].split(" ", 1)[1]] = np.asarray(image)
    return out


def test_the_standin_blurs_past_the_mask_as_the_webui_does():
    """With its overlay, the WebUI changes pixels outside the mask it was given (mask blur 4)."""
    init = Image.new("RGB", (64, 64), (10, 20, 30))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    p = processing.StableDiffusionProcessingImg2Img(init_images=[init], mask=mask, mask_blur=4, width=64,
                                                    height=64, prompt="x", inpaint_full_res=True)
    p.prompts, p.seeds, p.negative_prompts = ["x"], [1], [""]
    out = np.asarray(p.sample_images()[0])
    outside = np.asarray(mask) == 0
    assert (out[outside] != np.asarray(init)[outside]).any(axis=1).sum() > 100


@pytest.mark.parametrize("blur,padding", [(0, 0), (4, 32), (16, 8)])
def test_pixels_outside_the_saved_mask_are_exact_for_every_blur(blur, padding):
    args = ({"enabled": True, "mask_blur": blur, "mask_dilate": 0, "inpaint_padding": padding, "save_passes": True},)
    p, _, _, _ = job("a forest BREAK ohwx man <lora:ohwx:1>", args=args, batch_size=2, width=96, height=64)
    processed = run(p)
    for index in range(2):
        final, found = np.asarray(processed.images[index]), passes_of(processed, index)
        alpha = found["person_1-mask"]
        assert (final[alpha == 0] == found["base"][alpha == 0]).all()
        assert (final[alpha == alpha.max()] != found["base"][alpha == alpha.max()]).any()
        if blur:
            assert ((alpha > 0) & (alpha < 255)).any()  # a real feather, pasted by us


def test_face_pass_and_hires_keep_the_outside_exact(monkeypatch):
    one_face(monkeypatch)
    args = ({"enabled": True, "mask_blur": 8, "inpaint_faces": True, "face_min_size": 8, "save_passes": True},)
    p, _, _, _ = job(PROMPT, args=args, enable_hr=True)
    processed = run(p)
    found = passes_of(processed)
    person, face = found["person_1"], np.asarray(processed.images[0])  # the face pass made the final
    alpha = found["person_1_face_1-mask"]
    assert (face[alpha == 0] == person[alpha == 0]).all() and (face != person).any()


def test_same_seed_same_image_whatever_ran_before():
    images = []
    for state in (1, 99999):
        processing.calls.clear()
        torch.manual_seed(state)  # another model load or job shifted torch's global generator
        torch.rand(state % 7 + 1)
        p, _, _, _ = job(PROMPT)
        images.append(np.asarray(run(p).images[0]))
    assert np.array_equal(*images)


def test_batch_image_equals_the_single_job_with_its_seed():
    p, _, _, _ = job(PROMPT, batch_size=2)
    batch = run(p).images
    p, _, _, _ = job(PROMPT)
    p.seed = 101
    single = run(p).images
    assert np.array_equal(np.asarray(batch[1]), np.asarray(single[0]))


def interrupt_at(kind, step=1, how="interrupt"):
    def on_step(p, at):
        if type(p).__name__ == kind and at == step:
            setattr(shared.state, "interrupted" if how == "interrupt" else "skipped", True)

    processing.ON_STEP.append(on_step)


def infotext_params(text):
    return dict(item.split(": ", 1) for item in text.splitlines()[-1].split(", ") if ": " in item)


def test_interrupt_in_the_person_pass_discards_it_and_says_so():
    interrupt_at("StableDiffusionProcessingImg2Img")
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "save_passes": True},))
    processed = run(p)
    assert len(nested_calls()) == 1
    final = np.asarray(processed.images[0])
    assert (final == processing.colour("a forest, photo", 100)).all()  # the half-made person is not pasted
    assert "person_1" not in passes_of(processed)
    params = infotext_params(processed.infotexts[0])
    assert params["Multipass interrupted"] == "person_1"
    assert "interrupted during person_1" in params["Multipass warnings"]


def test_interrupt_in_the_base_pass_marks_the_image():
    interrupt_at("StableDiffusionProcessingTxt2Img")
    p, _, _, _ = job(PROMPT)
    processed = run(p)
    assert nested_calls() == []
    params = infotext_params(processed.infotexts[0])
    assert params["Multipass interrupted"] == "base" and "unfinished" in params["Multipass warnings"]


def test_skip_in_a_person_pass_skips_the_rest_of_that_batch_only():
    interrupt_at("StableDiffusionProcessingImg2Img", how="skip")
    processing.ON_STEP[0] = (lambda original: lambda p, at: None if nested_calls() else original(p, at))(
        processing.ON_STEP[0])
    p, _, _, _ = job(PROMPT, batch_size=2, n_iter=2)
    processed = run(p)
    texts = [infotext_params(t) for t in processed.infotexts[:4]]
    assert texts[0]["Multipass interrupted"] == "person_1"
    assert "no person pass ran" in texts[1]["Multipass warnings"]
    assert "Multipass warnings" not in texts[2] and "Multipass warnings" not in texts[3]
    assert len(nested_calls()) == 3  # image 1 of batch 1 was skipped; batch 2 ran in full


def test_progress_covers_every_pass_and_never_goes_back():
    p, _, _, _ = job(PROMPT, batch_size=2, n_iter=2)
    run(p)
    fractions = [(no + step / steps) / count for _, no, count, step, steps in processing.PROGRESS]
    assert fractions == sorted(fractions) and fractions[0] == 0
    assert {count for *_, count, _, _ in processing.PROGRESS} == {2 + 4}  # 2 batches + 4 person passes
    assert shared.state.job_no == shared.state.job_count == 6


def test_progress_with_hires_and_an_empty_mask():
    p, _, _, _ = job("a forest BREAK ohwx man --mask_prompt nothing_there", enable_hr=True)
    processed = run(p)
    assert nested_calls() == [] and "skipped" in processed.infotexts[0]
    assert shared.state.job_count == 2  # hires doubles the one batch; the skipped pass is not counted


def ui(tab):
    import gradio  # the stand-in's

    script = SCRIPT.MultipassScript()
    components = script.ui(tab == "img2img")
    return script, components, gradio


def test_send_to_img2img_copies_every_control_by_name():
    """The WebUI's tab copy: inputs/outputs are the fields of each tab whose names match."""
    src, dst = ui("txt2img")[0], ui("img2img")[0]
    names = ["Prompt", "Negative prompt", "Steps", "Face restoration", *src.paste_field_names]
    inputs = [(c, n) for c, n in src.infotext_fields if n in names]
    outputs = [(c, n) for c, n in dst.infotext_fields if n in names]
    assert [n for _, n in inputs] == [n for _, n in outputs] == [infotext_label(f) for f in UI_FIELDS]
    assert [c.elem_id.replace("txt2img", "img2img") for c, _ in inputs] == [c.elem_id for c, _ in outputs]


def webui_paste(fields, params):
    """infotext_utils.connect_paste's paste_func: a value per field, converted by its type."""
    out = []
    for component, key in fields:
        value = params.get(key)
        kind = type(component.value)
        if value is None:
            out.append(component.value)
        elif kind is bool and value == "False":
            out.append(False)
        else:
            out.append(float(value) if kind is int else kind(value))
    return out


@pytest.mark.parametrize("options", [
    {"enabled": True, "denoising_strength": 0.6, "mask_prompt": "man | hat", "mask_dilate": "-5%", "mask_blur": 9,
     "person_steps": 12, "person_sampler": "DPM++ 2M", "inpaint_faces": True},
    {"enabled": True},
])
def test_png_info_paste_restores_the_options(options):
    assert normalize_pasted in script_callbacks.callbacks["infotext_pasted"]
    p, _, _, _ = job("a forest BREAK ohwx man", args=(options,))
    text = run(p).infotexts[0]
    script, _, _ = ui("txt2img")
    params = infotext_params(text)
    normalize_pasted(text, params)
    assert options_from_args(webui_paste(script.infotext_fields, params)) == options_from_args((options,))


def test_uploads_travel_inline_and_are_not_pasted_from_infotext(tmp_path):
    from lib_multipass.images import is_inline
    from lib_multipass.webui.args import UPLOADS

    script, components, _ = ui("txt2img")
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    mask.paste((255, 255, 255, 255), (0, 0, 30, 64))
    Image.new("RGB", (32, 32), (200, 150, 120)).save(tmp_path / "ref.png")
    uploaded = type("Upload", (), {"name": str(tmp_path / "ref.png")})()  # gradio's temporary file
    values = dict(zip(UI_FIELDS, [c.value for c in components]))
    values.update(enabled=True, mask_image=mask, face_swap_images=[uploaded])
    options = options_from_args([values[name] for name in UI_FIELDS])
    assert is_inline(options.mask_image) and all(is_inline(ref) for ref in options.face_swap_images)
    p, _, _, _ = job(PROMPT, args=[values[name] for name in UI_FIELDS])
    processed = run(p)
    assert nested_calls()[0]["mask"][:, :28].all() and "inline image" in processed.infotexts[0]
    params = infotext_params(processed.infotexts[0])
    normalize_pasted(processed.infotexts[0], params)
    assert not any(infotext_label(name) in params for name in UPLOADS)


def test_a_plain_infotext_pastes_as_multipass_off():
    script, _, _ = ui("img2img")
    params = {"Steps": "20"}
    normalize_pasted("", params)
    assert options_from_args(webui_paste(script.infotext_fields, params)).enabled is False


def test_break_prompt_with_multipass_off_warns_about_its_loras():
    p, _, _, _ = job(PROMPT, args=({"enabled": False},))
    processed = run(p)
    assert "Multipass is off" in processed.comments and "LoRAs" in processed.comments
    p, _, _, _ = job("a forest BREAK photo", args=({"enabled": False},))
    assert "Multipass is off" not in run(p).comments


def test_one_segment_keeps_its_lora_and_runs_its_face_pass(monkeypatch):
    one_face(monkeypatch)
    p, _, _, _ = job("ohwx man <lora:ohwx:1>", args=({"enabled": True, "inpaint_faces": True, "face_min_size": 8},))
    run(p)
    (base,), (face,) = base_calls(), nested_calls()
    assert base["loras"] == ["ohwx"] and face["loras"] == ["ohwx"] and face["denoise"] == 0.4


def test_xyz_cells_copy_the_job_without_sharing_its_state():
    p, _, _, _ = job(PROMPT)
    cells = [copy.copy(p) for _ in range(2)]
    for cell in cells:
        run(cell)
    assert len(nested_calls()) == 2


def test_batch_4x4_with_mixed_outcomes_keeps_every_image_independent(monkeypatch):
    from webui_support import LeftHalf

    from lib_multipass.webui import hooks

    empty_colour = processing.colour("a forest, photo", 105)  # image 6 (seed 105): nobody there

    class Picky(LeftHalf):
        def probabilities(self, image, terms):
            if tuple(np.asarray(image)[0, 0]) == empty_colour:
                return np.zeros(image.size[::-1], np.float32)
            return super().probabilities(image, terms)

    monkeypatch.setattr(hooks, "shared_segmenter", lambda source, device: Picky())
    real_paint = processing.StableDiffusionProcessingImg2Img.paint

    def failing(self, i, prompt, seed, call):
        if seed == 110:  # the person pass of image 10 runs out of memory
            raise RuntimeError("out of memory (simulated)")
        return real_paint(self, i, prompt, seed, call)

    monkeypatch.setattr(processing.StableDiffusionProcessingImg2Img, "paint", failing)
    p, _, _, _ = job(PROMPT, args=({"enabled": True, "mask_dilate": 0},), batch_size=4, n_iter=4)
    processed = run(p)
    assert len(processed.images) == 16
    texts = [infotext_params(t) for t in processed.infotexts]
    assert "found 0 subject" in texts[5]["Multipass warnings"] or "skipped" in texts[5]["Multipass warnings"]
    assert "out of memory" in texts[9]["Multipass warnings"]
    for index in set(range(16)) - {5, 9}:
        assert "Multipass warnings" not in texts[index], (index, texts[index])
        base = processing.colour("a forest, photo", 100 + index)
        final = np.asarray(processed.images[index])
        assert tuple(final[2, 62]) == base and tuple(final[32, 20]) != base  # outside kept, person painted
    for index in (5, 9):
        assert (np.asarray(processed.images[index]) == processing.colour("a forest, photo", 100 + index)).all()


def test_models_live_as_long_as_the_extension():
    """One segmenter for every job and both tabs; a changed setting drops the old weights; the
    WebUI's "Reload UI" (script_unloaded) empties the extension's models."""
    from lib_multipass.webui.models import MODELS

    MODELS.clear()
    first = shared_segmenter("models/clipseg", "cpu")
    assert shared_segmenter("models/clipseg", "cpu") is first and len(MODELS) == 1
    other = shared_segmenter("other/clipseg", "cpu")
    assert other is not first and len(MODELS) == 1
    assert MODELS.clear in script_callbacks.callbacks["script_unloaded"]
    for callback in script_callbacks.callbacks["script_unloaded"]:
        callback()
    assert len(MODELS) == 0


class Everywhere:
    """A segmenter stand-in that takes every pixel of any crop for a person."""

    def probabilities(self, image, terms):
        return np.full((image.height, image.width), 0.9, np.float32)


@pytest.fixture
def everywhere(monkeypatch):
    """One face in every image, a segmenter that marks every pixel, no mask models loaded."""
    from lib_multipass.webui import hooks
    from lib_multipass.webui.models import MODELS

    MODELS.clear()
    one_face(monkeypatch)
    monkeypatch.setattr(hooks, "shared_segmenter", lambda source, device: Everywhere())


@pytest.mark.parametrize("weights", ["tiny", "missing"])
def test_person_mask_edges_from_sam_or_said_why_not(everywhere, tiny, tmp_path, weights):
    """A face gives a person (people first); SAM (Settings > Multipass) redraws the edges, or,
    without its weights, the job goes on with the segmenter's edges and the infotext says why."""
    shared.opts.data["multipass_refiner"] = str(tiny.sam) if weights == "tiny" else str(tmp_path / "no-sam")
    p, _, _, _ = job(PROMPT)
    processed = run(p)
    assert len(nested_calls()) == 1
    info = processed.infotexts[0]
    if weights == "tiny":
        assert f"Multipass mask edges: SAM ({tiny.sam})" in info
    else:
        assert "Multipass mask edges: \"the segmenter" in info and "no such folder (nor a hub id" in info


@pytest.mark.parametrize("weights", ["tiny", "missing"])
def test_subjects_boxed_by_the_detector_or_said_why_not(everywhere, tiny, tmp_path, weights):
    """The subject detector (Settings > Multipass) boxes the subjects first; without its
    weights the job goes on with the segmenter alone and the infotext says why."""
    shared.opts.data["multipass_detector"] = str(tiny.detector) if weights == "tiny" else str(tmp_path / "no-owl")
    p, _, _, _ = job(PROMPT)
    processed = run(p)
    info = processed.infotexts[0]
    if weights == "tiny":
        assert f"Multipass subject detector: OWL ({tiny.detector})" in info
    else:
        assert "Multipass subject detector: \"none (" in info and "no-owl" in info
        assert len(nested_calls()) == 1  # the person pass ran: found by the face, as without a detector


def test_nanodet_by_name_boxes_the_subjects_from_the_webuis_models_folder(everywhere, monkeypatch, tmp_path):
    """'nanodet' in Settings: NanoDet from `models/nanodet` (here a tiny random graph, placed as
    the first download would), named in the infotext."""
    from lib_multipass.masks import nanodet
    from lib_multipass.tiny_models import build_nanodet

    monkeypatch.setattr(shared, "models_path", str(tmp_path / "models"))
    monkeypatch.setattr(nanodet, "FILES", {})
    build_nanodet(tmp_path / "models" / "nanodet")
    monkeypatch.setitem(shared.opts.data, "multipass_detector", "nanodet")
    p, _, _, _ = job(PROMPT)
    assert "Multipass subject detector: NanoDet-m (COCO)" in run(p).infotexts[0]


@pytest.mark.parametrize("keep", [True, False])
def test_the_mask_models_stay_loaded_between_jobs_only_when_the_setting_says(everywhere, monkeypatch, tiny, keep):
    from lib_multipass.webui.engine import current_detector

    monkeypatch.setattr(Everywhere, "unload", lambda self: None, raising=False)
    monkeypatch.setitem(shared.opts.data, "multipass_detector", str(tiny.detector))
    monkeypatch.setitem(shared.opts.data, "multipass_keep_segmenter", keep)
    p, _, _, _ = job(PROMPT)
    run(p)
    assert (current_detector()._model is not None) == keep
