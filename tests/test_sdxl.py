"""SDXL in the standalone engine, on tiny random SDXL components: a folder and a WebUI-layout
single file load, prompts are read as the WebUI reads them (two encoders, pooled output),
a kohya SDXL LoRA (original block names, te1/te2) reaches only the person pass, and the
multi-pass properties hold as on SD 1.x."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ldm_layout import unet_key, write_ldm_checkpoint
from PIL import Image
from safetensors.torch import save_file

from lib_multipass.engines.base import GenerateRequest
from lib_multipass.engines.diffusers import DiffusersEngine, load_pipeline, native_side
from lib_multipass.options import MultipassOptions
from lib_multipass.plan import Generation, make_plan, size_for
from lib_multipass.prompt import LoraTag, parse
from lib_multipass.runner import run
from lib_multipass.tiny_models import build_sdxl_pipeline

GEN = Generation(seed=5, steps=4, width=96, height=64, sampler="euler_a")
LORA = "xl_person"


def write_sdxl_lora(path, pipe, seed: int = 9, rank: int = 4) -> None:
    """A kohya SDXL LoRA as trainers write it: UNet attention in the original block names
    (`lora_unet_input_blocks_4_1_...`), both text encoders as `lora_te1_` / `lora_te2_`."""
    generator = torch.Generator().manual_seed(seed)
    layers = pipe.unet.config.layers_per_block
    up_attention = {i for i, kind in enumerate(pipe.unet.config.up_block_types) if "CrossAttn" in kind}
    modules = [("lora_unet_" + unet_key(f"{name}.weight", layers, up_attention).removesuffix(".weight")
                .replace(".", "_"), module)
               for name, module in pipe.unet.named_modules() if name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v")]
    for prefix, encoder in (("lora_te1_text_model_", pipe.text_encoder), ("lora_te2_text_model_", pipe.text_encoder_2)):
        modules += [(prefix + name.removeprefix("text_model.").replace(".", "_"), module)
                    for name, module in encoder.named_modules() if name.endswith(("q_proj", "v_proj"))]
    tensors = {}
    for key, module in modules:
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.5
        tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.5
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    assert any("input_blocks" in key for key in tensors) and any("lora_te2_" in key for key in tensors)
    save_file(tensors, str(path))


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-sdxl")
    pipe = build_sdxl_pipeline(root / "model")
    (root / "loras").mkdir()
    write_sdxl_lora(root / "loras" / f"{LORA}.safetensors", pipe)
    return root


@pytest.fixture(scope="session")
def xl_engine(sdxl):
    return DiffusersEngine(load_pipeline(str(sdxl / "model"), device="cpu"), sdxl / "loras")


def job(prompt: str, mask: str, **options):
    return make_plan(parse(prompt, "blurry"), MultipassOptions.from_dict({"mask_image": mask, **options}), GEN)


def pixels(image):
    return np.asarray(image).astype(np.int16)


def test_an_sdxl_job_keeps_the_lora_out_of_the_base_and_the_outside_exact(xl_engine, half_mask):
    assert xl_engine.family == "sdxl" and native_side(xl_engine.pipe) == 1024
    with_lora = run(job(f"a forest BREAK photo BREAK ohwx man <lora:{LORA}:1>", half_mask), xl_engine)
    plain = run(job("a forest BREAK photo BREAK ohwx man", half_mask), xl_engine)
    assert with_lora.error is None and list(with_lora.images) == ["base", "person_1"]
    assert np.array_equal(pixels(with_lora.images["base"]), pixels(plain.images["base"]))  # no LoRA in the base
    assert not np.array_equal(pixels(with_lora.final), pixels(plain.final))  # the LoRA reaches the person
    alpha = with_lora.alphas["person_1"]
    base, final = pixels(with_lora.images["base"]), pixels(with_lora.final)
    assert np.array_equal(base[alpha == 0], final[alpha == 0])
    again = run(job(f"a forest BREAK photo BREAK ohwx man <lora:{LORA}:1>", half_mask), xl_engine)
    assert np.array_equal(pixels(again.final), final)  # same seed, same image


def test_sdxl_prompts_embed_as_diffusers_does_and_weights_count(xl_engine):
    mine = xl_engine.encode_prompts("a photo of a forest", "blurry")
    theirs = xl_engine.pipe.encode_prompt("a photo of a forest", device="cpu", num_images_per_prompt=1,
                                          do_classifier_free_guidance=True, negative_prompt="blurry")
    names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
    for name, tensor in zip(names, theirs):
        assert torch.equal(mine[name], tensor), name
    empty = xl_engine.encode_prompts("a forest", "")  # an empty negative is zeros, as in the WebUI and diffusers
    assert not empty["negative_prompt_embeds"].any() and not empty["negative_pooled_prompt_embeds"].any()
    stronger = xl_engine.encode_prompts("a photo of a (forest:1.5)", "blurry")
    assert not torch.equal(stronger["prompt_embeds"], mine["prompt_embeds"])
    long = xl_engine.encode_prompts(", ".join(["a red car on a hill"] * 20), "")
    assert long["prompt_embeds"].shape[1] == long["negative_prompt_embeds"].shape[1] >= 77 * 2


def test_an_sdxl_single_file_in_the_webui_layout_loads_as_the_folder(sdxl, tmp_path):
    folder = DiffusersEngine(load_pipeline(str(sdxl / "model"), device="cpu"))
    path = tmp_path / "tiny-sdxl.safetensors"
    write_ldm_checkpoint(folder.pipe, path)
    single = DiffusersEngine(load_pipeline(str(path), config=str(sdxl / "model"), device="cpu"))
    assert single.family == "sdxl"
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        theirs = getattr(folder.pipe, name).state_dict()
        assert all(torch.equal(value, theirs[key]) for key, value in getattr(single.pipe, name).state_dict().items())
    request = GenerateRequest("a forest", "", (), 2, 3, 7.0, "euler", 64, 64)
    # the same weights bit for bit; the folder's are read in place from the file (unaligned), the single
    # file's are copies, and the CPU kernels round differently on the two: at most a level here and there
    difference = np.abs(pixels(single.txt2img(request)) - pixels(folder.txt2img(request)))
    assert difference.max() <= 2 and difference.mean() < 0.05


def test_sdxl_sizes_are_its_1024_buckets():
    assert size_for("16:9", 1024) == (1344, 768) and size_for("1:1", 1024) == (1024, 1024)


def test_the_sdxl_lora_acts_on_both_text_encoders(xl_engine):
    xl_engine.use_loras([LoraTag(LORA, 1.0)])
    on = xl_engine.encode_prompts("a forest", "blurry")
    xl_engine.use_loras([])
    off = xl_engine.encode_prompts("a forest", "blurry")
    assert not torch.equal(on["pooled_prompt_embeds"], off["pooled_prompt_embeds"])  # te2
    width = xl_engine.pipe.text_encoder.config.hidden_size
    assert not torch.equal(on["prompt_embeds"][..., :width], off["prompt_embeds"][..., :width])  # te1


def test_a_controlnet_for_another_model_type_is_refused_saying_so(xl_engine, tiny):
    from lib_multipass.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="another model type .* SDXL model's 80"):
        xl_engine.controlnet(str(tiny.controlnet))


def test_an_sdxl_controlnet_guides_the_base_and_the_person(sdxl, xl_engine, half_mask, tmp_path):
    from lib_multipass.tiny_models import build_controlnet

    # from the SDXL UNet (as loaded, without LoRA layers), its zero convolutions made random
    build_controlnet(tmp_path / "cn", load_pipeline(str(sdxl / "model"), device="cpu"))
    hint = Image.new("RGB", (96, 64), "white")
    hint.paste((0, 0, 0), (30, 10, 60, 50))
    hint.save(tmp_path / "hint.png")
    guided = run(job("a forest BREAK ohwx man", half_mask, controlnet="canny", controlnet_model=str(tmp_path / "cn"),
                     controlnet_image=str(tmp_path / "hint.png")), xl_engine)
    plain = run(job("a forest BREAK ohwx man", half_mask), xl_engine)
    assert guided.error is None and list(guided.images) == ["base", "person_1"]
    assert not np.array_equal(pixels(guided.images["base"]), pixels(plain.images["base"]))


def test_another_model_type_is_refused_before_any_weight_loads(tmp_path):
    from lib_multipass.errors import MultipassError

    (tmp_path / "flux").mkdir()
    (tmp_path / "flux" / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    with pytest.raises(MultipassError, match="FluxPipeline; the standalone engine runs SD 1.x/2.x and SDXL"):
        load_pipeline(str(tmp_path / "flux"), device="cpu")


def test_an_fp16_sdxl_vae_encodes_in_fp32_with_only_its_encoder_converted(xl_engine, monkeypatch):
    """As diffusers' upcast of the whole VAE, bit for bit; the decoder is never converted."""
    vae, image = xl_engine.pipe.vae, Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), np.uint8))
    vae.to(torch.float16)
    try:
        vae.to(torch.float32)  # the whole VAE upcast, from the same fp16 weights
        expected = xl_engine.encode_image(image)
        vae.to(torch.float16)
        converted = []
        monkeypatch.setattr(vae.decoder, "_apply", lambda *a, **k: converted.append(1))
        got = xl_engine.encode_image(image)
        assert torch.equal(got, expected) and got.dtype == torch.float32
        assert next(vae.encoder.parameters()).dtype == torch.float16 and converted == []
    finally:
        monkeypatch.undo()
        vae.to(torch.float32)
