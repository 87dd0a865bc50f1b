"""The standalone engine end to end on tiny random models: the properties users rely on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from ldm_layout import write_ldm_checkpoint
from PIL import Image

from lib_multipass.engines.base import GenerateRequest
from lib_multipass.engines.diffusers import SCHEDULERS, DiffusersEngine, load_pipeline
from lib_multipass.errors import ModelNotFoundError
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan
from lib_multipass.prompt import parse
from lib_multipass.runner import run
from lib_multipass.tiny_models import LORA_NAME

GEN = Generation(seed=5, steps=4, width=96, height=64, sampler="euler_a")
LORA_PROMPT = f"a forest BREAK photo BREAK ohwx man <lora:{LORA_NAME}:1>"
PLAIN_PROMPT = "a forest BREAK photo BREAK ohwx man"


def job(prompt, mask_image=None, **options):
    opts = MultipassOptions.from_dict({"mask_image": mask_image, "mask_blur": 6, **options})
    return make_plan(parse(prompt, "blurry"), opts, GEN)


def pixels(image):
    return np.asarray(image).astype(np.int16)


def test_pixels_outside_the_feathered_mask_are_the_base_image(engine, half_mask):
    result = run(job(LORA_PROMPT, half_mask), engine)
    assert result.error is None
    alpha = result.alphas["person_1"]
    base, final = pixels(result.images["base"]), pixels(result.final)
    assert (alpha == 0).any() and (alpha > 0).any()
    assert np.array_equal(base[alpha == 0], final[alpha == 0])
    assert np.abs(base[alpha == 1] - final[alpha == 1]).mean() > 1  # the subject was re-painted


def test_base_pass_never_sees_the_lora_and_the_lora_changes_the_person(engine, half_mask):
    with_lora = run(job(LORA_PROMPT, half_mask), engine)
    without = run(job(PLAIN_PROMPT, half_mask), engine)
    assert np.array_equal(pixels(with_lora.images["base"]), pixels(without.images["base"]))
    assert not np.array_equal(pixels(with_lora.final), pixels(without.final))


def test_same_seed_same_images(engine, half_mask):
    first, second = run(job(LORA_PROMPT, half_mask), engine), run(job(LORA_PROMPT, half_mask), engine)
    for name in ("base", "person_1"):
        assert np.array_equal(pixels(first.images[name]), pixels(second.images[name]))


def test_weights_and_base_output_unchanged_after_a_lora_job(tiny, half_mask):
    pipe = load_pipeline(str(tiny.checkpoint), device="cpu")
    fresh = DiffusersEngine(pipe, tiny.lora_dir)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    request = GenerateRequest("a forest", "", (), 3, 4, 7.0, "euler", 64, 64)
    image_before = pixels(fresh.txt2img(request))
    run(job(LORA_PROMPT, half_mask), fresh)
    after = {k.replace(".base_layer", ""): v for k, v in pipe.unet.state_dict().items() if "lora_" not in k}
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert np.array_equal(image_before, pixels(fresh.txt2img(request)))


def test_lora_loaded_once_and_switched(tiny, half_mask, monkeypatch):
    pipe = load_pipeline(str(tiny.checkpoint), device="cpu")
    fresh = DiffusersEngine(pipe, tiny.lora_dir)
    loads = []
    original = pipe.load_lora_weights
    monkeypatch.setattr(pipe, "load_lora_weights", lambda *a, **k: loads.append(a) or original(*a, **k))
    run(job(LORA_PROMPT, half_mask), fresh)
    run(job(LORA_PROMPT, half_mask), fresh)
    assert len(loads) == 1 and fresh.adapters == {LORA_NAME: f"mp_{LORA_NAME}"}


def test_lora_switch_gives_pefts_own_result_without_walking_the_model(tiny, monkeypatch):
    """Base (no LoRA) -> person (LoRA at 0.7) -> base -> person: each image equals the one made
    with diffusers' own set_adapters/disable_lora, and our passes never call those (they walk
    every module of the UNet and text encoder)."""
    import dataclasses

    from lib_multipass.prompt import LoraTag

    pipe = load_pipeline(str(tiny.checkpoint), device="cpu")
    fresh = DiffusersEngine(pipe, tiny.lora_dir)
    plain = GenerateRequest("ohwx man", "", (), 5, 3, 7.0, "euler", 64, 64)
    person = dataclasses.replace(plain, loras=(LoraTag(LORA_NAME, 0.7),))
    walks = []
    for name in ("set_adapters", "disable_lora", "enable_lora"):
        monkeypatch.setattr(pipe, name, lambda *a, _o=getattr(pipe, name), _n=name, **k: walks.append(_n) or _o(*a, **k))
    ours = [pixels(fresh.txt2img(r)) for r in (plain, person, plain, person)]
    assert walks == [] and fresh.loras.layers
    assert np.array_equal(ours[0], ours[2]) and np.array_equal(ours[1], ours[3]) and not np.array_equal(ours[0], ours[1])

    def pefts_own(loras):
        if loras:
            pipe.enable_lora()
            pipe.set_adapters([f"mp_{LORA_NAME}"], adapter_weights=[sum(lora.weight for lora in loras)])
        else:
            pipe.disable_lora()

    monkeypatch.setattr(fresh, "use_loras", pefts_own)
    theirs = [pixels(fresh.txt2img(r)) for r in (plain, person, plain)]
    assert all(np.array_equal(a, b) for a, b in zip(theirs, ours))


def test_passes_share_one_set_of_components(engine):
    inpaint = engine.inpaint_pipe
    for name in ("unet", "vae", "text_encoder", "tokenizer"):
        assert getattr(inpaint, name) is getattr(engine.pipe, name)


def test_missing_lora_lists_the_loras_found(engine, half_mask):
    with pytest.raises(ModelNotFoundError) as info:
        run(job("scene BREAK man <lora:nobody:1>", half_mask), engine)
    assert "'nobody' not found" in str(info.value) and LORA_NAME in str(info.value)


def test_segmenter_path_masks_from_the_base_image(engine):
    result = run(job(PLAIN_PROMPT, mask_threshold=0.6, mask_dilate=0, mask_min_area=0, mask_person_check=False),
                 engine)  # random weights paint no body a pose model would find
    alpha = result.alphas["person_1"]
    assert alpha.shape == (64, 96) and (alpha > 0).any()  # something was in-painted
    base, final = pixels(result.images["base"]), pixels(result.final)
    assert np.array_equal(base[alpha == 0], final[alpha == 0]) and not np.array_equal(base, final)


@pytest.mark.parametrize("sampler", sorted(SCHEDULERS))
def test_every_sampler_runs_reproducibly(engine, sampler):
    request = GenerateRequest("a forest", "", (), 11, 3, 5.0, sampler, 64, 64)
    assert np.array_equal(pixels(engine.txt2img(request)), pixels(engine.txt2img(request)))


def test_single_file_checkpoint_in_webui_layout(tiny, tmp_path, engine):
    from diffusers import StableDiffusionPipeline

    source = StableDiffusionPipeline.from_pretrained(str(tiny.checkpoint))
    path = tmp_path / "tiny-sd.safetensors"
    write_ldm_checkpoint(source, path)
    single = DiffusersEngine(load_pipeline(str(path), config=str(tiny.checkpoint), device="cpu"))
    request = GenerateRequest("a forest", "", (), 2, 3, 7.0, "euler", 64, 64)
    assert np.array_equal(pixels(single.txt2img(request)), pixels(engine.txt2img(request)))


@pytest.mark.parametrize("source, words", [("nowhere/at/all.bin", "not found"), ("missing-dir/", "not found")])
def test_checkpoint_errors(source, words, tmp_path):
    with pytest.raises(ModelNotFoundError, match=words):
        load_pipeline(source, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="model_index.json"):
        load_pipeline(str(tmp_path / "empty"), device="cpu")


def test_interrupt_after_the_base_keeps_it(tiny, half_mask):
    fresh = DiffusersEngine(load_pipeline(str(tiny.checkpoint), device="cpu"), tiny.lora_dir)
    original = fresh.txt2img
    fresh.txt2img = lambda request: (original(request), fresh.interrupt())[0]
    result = run(job(LORA_PROMPT, half_mask), fresh)
    assert result.interrupted and list(result.images) == ["base"]


def test_interrupt_during_a_pass_discards_the_half_made_image(tiny, half_mask):
    fresh = DiffusersEngine(load_pipeline(str(tiny.checkpoint), device="cpu"), tiny.lora_dir)
    original = fresh.txt2img
    fresh.txt2img = lambda request: (fresh.interrupt(), original(request))[1]
    result = run(job(LORA_PROMPT, half_mask), fresh)
    assert result.interrupted_pass == "base" and result.images == {} and result.partial is not None


def test_prompt_masking_keeps_the_subject_of_the_input_photo(engine, tmp_path):
    rng = np.random.default_rng(3)
    photo = Image.fromarray(rng.integers(0, 256, (72, 100, 3), dtype=np.uint8))  # any size, not a multiple of 8
    photo.save(tmp_path / "photo.png")
    subject = Image.new("L", (100, 72), 0)
    subject.paste(255, (35, 10, 65, 70))
    subject.save(tmp_path / "subject.png")
    options = MultipassOptions.from_dict({"input_image": str(tmp_path / "photo.png"),
                                          "mask_image": str(tmp_path / "subject.png")})
    plan = make_plan(parse("a sunny beach --mask_invert --mask_dilate -4"), options, GEN)
    result = run(plan, engine)
    alpha, final = result.alphas["person_1"], pixels(result.final)
    assert final.shape == (72, 100, 3) and result.error is None
    kept = alpha == 0
    assert kept[20:60, 45:55].all()  # the subject's core
    assert np.array_equal(final[kept], pixels(photo)[kept])
    assert np.abs(final[alpha == 1] - pixels(photo)[alpha == 1]).mean() > 1


def test_a_failure_inside_the_person_pass_leaves_the_model_unmodified(engine, half_mask, monkeypatch):
    request = GenerateRequest("a forest", "", (), 5, 4, 5.0, "euler", 64, 64)
    before = pixels(engine.txt2img(request))
    pipe = engine.pipeline("img2img", None)  # a 4-channel model's person pass: img2img with the blend

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(type(pipe), "__call__", out_of_memory)
    result = run(job(LORA_PROMPT, half_mask), engine)  # the LoRA is switched on, then the pass fails
    monkeypatch.undo()
    assert list(result.images) == ["base"] and "out of memory" in result.error
    assert np.array_equal(pixels(engine.txt2img(request)), before)  # no LoRA left active, nothing fused


def test_kohya_loras_in_the_original_sd_block_names_load_and_act_the_same(tiny, tmp_path):
    """`lora_unet_input_blocks_4_1_...` (original SD names), as some trainers write them,
    gives the same image as the same LoRA in diffusers' block names."""
    import re
    import shutil

    from safetensors.torch import load_file, save_file

    from lib_multipass.prompt import LoraTag

    def original_names(key: str) -> str:
        for pattern, block in ((r"lora_unet_down_blocks_(\d)_attentions_(\d)_", lambda i, j: f"input_blocks_{3 * i + j + 1}"),
                               (r"lora_unet_up_blocks_(\d)_attentions_(\d)_", lambda i, j: f"output_blocks_{3 * i + j}")):
            found = re.match(pattern, key)
            if found:
                return f"lora_unet_{block(int(found[1]), int(found[2]))}_1_{key[found.end():]}"
        return key.replace("lora_unet_mid_block_attentions_0_", "lora_unet_middle_block_1_")

    loras = tmp_path / "loras"
    loras.mkdir()
    shutil.copy(tiny.lora_dir / f"{LORA_NAME}.safetensors", loras / "diffusers_names.safetensors")
    tensors = load_file(str(loras / "diffusers_names.safetensors"))
    renamed = {original_names(key): value for key, value in tensors.items()}
    assert any("input_blocks" in key for key in renamed) and any("middle_block" in key for key in renamed)
    save_file(renamed, str(loras / "sd_names.safetensors"))
    engine = DiffusersEngine(load_pipeline(str(tiny.checkpoint), device="cpu"), loras)
    images = [np.asarray(engine.txt2img(GenerateRequest("a forest", "", (LoraTag(name, 1.0),), 3, 2, 5.0, "euler", 64, 64)))
              for name in ("diffusers_names", "sd_names")]
    assert np.array_equal(images[0], images[1])


@pytest.mark.parametrize("upscaler", ["Lanczos", "Latent"])
def test_the_harmonizing_pass_upscales_and_redoes_the_composite_reproducibly(engine, half_mask, upscaler):
    plan = job(LORA_PROMPT, half_mask, hires_denoising_strength=0.5, hires_scale=1.5, hires_upscaler=upscaler)
    first, again = run(plan, engine), run(plan, engine)
    assert first.error is None and list(first.images) == ["base", "person_1", "harmonize"]
    assert first.final.size == (144, 96)
    assert np.array_equal(pixels(first.final), pixels(again.final))  # same seed, same image
    composite = pixels(first.images["person_1"].resize((144, 96), Image.Resampling.LANCZOS))
    assert np.abs(pixels(first.final) - composite).mean() > 1  # redone, not only resized
    # the base pass still ran without the LoRA, and the composite is what a job without the pass makes
    plain = run(job(LORA_PROMPT, half_mask), engine)
    assert np.array_equal(pixels(plain.final), pixels(first.images["person_1"]))


def test_the_harmonizing_pass_runs_with_the_persons_lora(engine, half_mask):
    """One person: the pass keeps their LoRA, so the likeness is not washed out by the scene prompt."""
    with_lora = run(job(LORA_PROMPT, half_mask, hires_denoising_strength=0.5), engine)
    request = GenerateRequest.from_pass(with_lora.plan.harmonize)
    assert [lora.name for lora in request.loras] == [LORA_NAME]
    without = engine.img2img(replace(request, loras=()), with_lora.images["person_1"], 0.5)
    assert not np.array_equal(pixels(with_lora.final), pixels(without))


def test_in_paint_puts_the_original_back_outside_the_mask_at_every_step(engine):
    """A 4-channel model's person pass is img2img with the original's latents put back outside
    the mask after each step (noised to the next level, made before the loop runs on): after
    the last step they are the original's exactly, inside the pass painted."""
    import torch

    from lib_multipass.engines.latent_blend import LatentBlend

    init = engine.encode_image(engine.txt2img(GenerateRequest("a forest", "", (), 5, 4, 7.0, "euler", 64, 64)))
    repaint = torch.zeros(1, 1, *init.shape[-2:])
    repaint[..., : init.shape[-1] // 2] = 1
    blend = LatentBlend(init, repaint, seed=3)
    steps = []

    def on_step(pipe, step, timestep, tensors):
        steps.append(step)
        return {"latents": blend(pipe, step, tensors["latents"])}

    out = engine.pipeline("img2img", None)(
        prompt="ohwx man", image=init, strength=0.75, num_inference_steps=8, guidance_scale=7.0,
        generator=torch.Generator().manual_seed(3), output_type="latent", callback_on_step_end=on_step).images
    half = init.shape[-1] // 2
    assert steps == list(range(6)) and blend.targets is not None and len(blend.targets) == 6
    assert torch.equal(out[..., half:], init[..., half:])
    assert (out[..., :half] - init[..., :half]).abs().mean() > 0.1
    # the blend's noise is img2img's own (the seed's first draw): the original is noised one way
    pipe = engine.pipeline("img2img", None)
    pipe.scheduler.set_timesteps(8)
    first = pipe.scheduler.timesteps[2:3]
    theirs = pipe.prepare_latents(init, first, 1, 1, init.dtype, init.device, torch.Generator().manual_seed(3))
    assert torch.allclose(theirs, pipe.scheduler.add_noise(init, blend.noise, first))


@pytest.mark.parametrize("sampler", sorted(SCHEDULERS))
def test_in_paint_runs_with_every_sampler(engine, half_mask, sampler):
    """The blend asks each scheduler for its noise levels (DDIM, LCM and TCD keep no step index)."""
    plan = make_plan(parse(PLAIN_PROMPT), MultipassOptions.from_dict({"mask_image": half_mask}), replace(GEN, sampler=sampler))
    result = run(plan, engine)
    assert result.error is None and "person_1" in result.images
