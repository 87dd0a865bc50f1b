"""Every LoRA layout the WebUI's Lora extension loads, loaded by the standalone engine and
acting as the WebUI computes it: tiny files of each layout on the tiny pipeline, each layer's
output checked against the WebUI's formula for its weight change (LyCORIS's own)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from lib_multipass.engines.base import GenerateRequest
from lib_multipass.engines.diffusers import DiffusersEngine, load_pipeline
from lib_multipass.errors import ModelNotFoundError
from lib_multipass.prompt import LoraTag
from lib_multipass.tiny_models import LORA_NAME

WEIGHT = 0.7
ALPHA, RANK = 2.0, 4


@pytest.fixture
def fresh(tiny, tmp_path):
    """A freshly loaded engine (adapters cannot be taken out of a pipeline) and its LoRA folder."""
    folder = tmp_path / "loras"
    folder.mkdir()
    return DiffusersEngine(load_pipeline(str(tiny.checkpoint), device="cpu"), folder), folder


def targets(pipe):
    """(kohya name, module): an attention projection, a text encoder projection, a 3x3 conv."""
    unet, text = dict(pipe.unet.named_modules()), dict(pipe.text_encoder.named_modules())
    to_q = next(n for n in unet if n.startswith("down_blocks.0.attentions.1") and n.endswith("attn1.to_q"))
    conv = next(n for n in unet if n.startswith("down_blocks.1.resnets.0") and n.endswith("conv1"))
    q_proj = next(n for n in text if n.endswith("layers.0.self_attn.q_proj"))
    te_name = "lora_te_text_model_" + q_proj.removeprefix("text_model.").replace(".", "_")  # as trainers write it
    return [("lora_unet_" + to_q.replace(".", "_"), unet[to_q]), (te_name, text[q_proj]),
            ("lora_unet_" + conv.replace(".", "_"), unet[conv])]


def shape2d(module) -> tuple[int, int, int]:
    """(out, in, kernel size) of a Linear or Conv2d."""
    weight = module.weight
    return weight.shape[0], weight.shape[1], weight.shape[2] if weight.ndim == 4 else 1


def loha(module, generator, cp: bool = False) -> dict[str, torch.Tensor]:
    out, inp, k = shape2d(module)
    rand = lambda *s: torch.randn(*s, generator=generator) * 0.3  # noqa: E731
    if cp:  # CP decomposition of a conv: cores (r, r, k, k), factors (r, out) and (r, in)
        return {"hada_t1": rand(RANK, RANK, k, k), "hada_w1_a": rand(RANK, out), "hada_w1_b": rand(RANK, inp),
                "hada_t2": rand(RANK, RANK, k, k), "hada_w2_a": rand(RANK, out), "hada_w2_b": rand(RANK, inp)}
    return {"hada_w1_a": rand(out, RANK), "hada_w1_b": rand(RANK, inp * k * k),
            "hada_w2_a": rand(out, RANK), "hada_w2_b": rand(RANK, inp * k * k)}


def lokr(module, generator, full: bool = False) -> dict[str, torch.Tensor]:
    out, inp, k = shape2d(module)
    rand = lambda *s: torch.randn(*s, generator=generator) * 0.3  # noqa: E731
    w1 = {"lokr_w1": rand(2, 2)}  # out = 2 x out/2, in = 2 x in/2
    if full or k > 1:
        return {**w1, "lokr_w2": rand(out // 2, inp // 2, k, k) if k > 1 else rand(out // 2, inp // 2)}
    return {**w1, "lokr_w2_a": rand(out // 2, RANK), "lokr_w2_b": rand(RANK, inp // 2)}


def cp(t, wa, wb):
    """The WebUI's make_weight_cp (lyco_helpers.py)."""
    return torch.einsum("i j k l, i r -> r j k l", torch.einsum("i j k l, j r -> i r k l", t, wb), wa)


def webui_delta(parts: dict[str, torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
    """The weight change the WebUI's Lora extension makes of one module (network_hada.py,
    network_lokr.py): the product of the factors, times alpha / rank when there is a rank."""
    alpha = parts["alpha"].item() if "alpha" in parts else None
    if "hada_w1_a" in parts:
        if "hada_t1" in parts:
            delta = cp(parts["hada_t1"], parts["hada_w1_a"], parts["hada_w1_b"]) * cp(
                parts["hada_t2"], parts["hada_w2_a"], parts["hada_w2_b"])
        else:
            delta = (parts["hada_w1_a"] @ parts["hada_w1_b"]) * (parts["hada_w2_a"] @ parts["hada_w2_b"])
        dim = parts["hada_w1_b"].shape[0]
    else:
        w1 = parts["lokr_w1"]
        w2 = parts["lokr_w2"] if "lokr_w2" in parts else parts["lokr_w2_a"] @ parts["lokr_w2_b"]
        dim = parts["lokr_w2_b"].shape[0] if "lokr_w2_b" in parts else None
        if w2.ndim == 4:
            w1 = w1[:, :, None, None]
        delta = torch.kron(w1, w2.contiguous())
    scale = alpha / dim if alpha is not None and dim else 1.0
    return delta.reshape(weight.shape) * scale


def write(folder, name: str, modules: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict[str, torch.Tensor]]:
    tensors = {f"{key}.{part}": value for key, parts in modules.items() for part, value in parts.items()}
    for key in modules:
        tensors[f"{key}.alpha"] = torch.tensor(ALPHA)
        modules[key]["alpha"] = tensors[f"{key}.alpha"]
    save_file(tensors, str(folder / f"{name}.safetensors"))
    return modules


def with_weight(base, weight: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(an input, the base layer's output on it with `weight` in place of its own)."""
    if isinstance(base, torch.nn.Conv2d):
        x = torch.randn(1, base.in_channels, 8, 8, generator=generator)
        return x, F.conv2d(x, weight, base.bias, base.stride, base.padding)
    x = torch.randn(2, base.in_features, generator=generator)
    return x, F.linear(x, weight, base.bias)


def assert_acts_as(engine, name: str, deltas: dict[str, torch.Tensor]) -> None:
    """With LoRA `name` at WEIGHT each layer computes base weight + WEIGHT x its delta; off,
    the base layer bit for bit."""
    generator = torch.Generator().manual_seed(7)
    engine.use_loras([LoraTag(name, WEIGHT)])
    found = dict(targets(engine.pipe))  # the adapter layers that now wrap the model's own
    for key, delta in deltas.items():
        base = found[key].get_base_layer()
        x, expected = with_weight(base, base.weight + WEIGHT * delta, generator)
        with torch.no_grad():
            assert torch.allclose(found[key](x), expected, atol=1e-5), key
            assert not torch.allclose(base(x), expected, atol=1e-3), key  # the file does change the layer
    engine.use_loras([])
    for key in deltas:
        base = found[key].get_base_layer()
        x, _ = with_weight(base, base.weight, generator)
        with torch.no_grad():
            assert torch.equal(found[key](x), base(x)), key


def assert_acts_as_the_webui(engine, name: str, modules: dict[str, dict[str, torch.Tensor]]) -> None:
    found = dict(targets(engine.pipe))
    assert_acts_as(engine, name, {key: webui_delta(parts, found[key].weight) for key, parts in modules.items()})


@pytest.mark.parametrize("layout", ["loha", "loha_cp", "lokr", "lokr_full"])
def test_lycoris_files_act_as_the_webui_computes_them(fresh, layout):
    engine, folder = fresh
    generator = torch.Generator().manual_seed(3)
    modules = {}
    for key, module in targets(engine.pipe):
        conv = isinstance(module, torch.nn.Conv2d)
        if layout == "loha_cp" and not conv:
            continue
        modules[key] = {"loha": lambda m: loha(m, generator), "loha_cp": lambda m: loha(m, generator, cp=True),
                        "lokr": lambda m: lokr(m, generator), "lokr_full": lambda m: lokr(m, generator, full=True),
                        }[layout](module)
    assert_acts_as_the_webui(engine, layout, write(folder, layout, modules))


def test_locon_convolutions_act_as_the_webui_computes_them(fresh):
    """kohya LoCon: lora_down/lora_up on 3x3 convolutions too (up @ down, times alpha / rank)."""
    engine, folder = fresh
    generator = torch.Generator().manual_seed(4)
    tensors, deltas = {}, {}
    for key, module in targets(engine.pipe):
        out, inp, k = shape2d(module)
        down = torch.randn(RANK, inp, k, k, generator=generator) * 0.3
        up = torch.randn(out, RANK, 1, 1, generator=generator) * 0.3
        if k == 1:
            down, up = down.reshape(RANK, inp), up.reshape(out, RANK)
        tensors.update({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up,
                        f"{key}.alpha": torch.tensor(ALPHA)})
        deltas[key] = (ALPHA / RANK * up.reshape(out, RANK) @ down.reshape(RANK, -1)).reshape(module.weight.shape)
    save_file(tensors, str(folder / "locon.safetensors"))
    assert_acts_as(engine, "locon", deltas)


def test_a_text_encoder_only_kohya_lora_without_out_proj_loads(fresh):
    """diffusers' converter cannot tell the format of such a file; the module lookup can."""
    engine, folder = fresh
    key, module = targets(engine.pipe)[1]
    down, up = torch.randn(RANK, module.in_features) * 0.3, torch.randn(module.out_features, RANK) * 0.3
    save_file({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(ALPHA)},
              str(folder / "te_only.safetensors"))
    assert_acts_as(engine, "te_only", {key: ALPHA / RANK * up @ down})


def test_lycoris_in_the_original_sd_block_names_acts_the_same(fresh):
    """A LoHa written with `lora_unet_input_blocks_2_1_...` (SDXL-era trainers) = diffusers' names."""
    engine, folder = fresh
    generator = torch.Generator().manual_seed(5)
    key, module = targets(engine.pipe)[0]
    assert key.startswith("lora_unet_down_blocks_0_attentions_1_")
    modules = write(folder, "loha_sd_names", {key: loha(module, generator)})
    renamed = {k.replace("lora_unet_down_blocks_0_attentions_1_", "lora_unet_input_blocks_2_1_"): v
               for k, v in load_file(str(folder / "loha_sd_names.safetensors")).items()}
    save_file(renamed, str(folder / "loha_sd_names.safetensors"))
    assert_acts_as_the_webui(engine, "loha_sd_names", modules)


def test_a_peft_format_lora_gives_the_image_of_the_same_kohya_lora(tiny, tmp_path):
    """diffusers' own save (peft keys, `unet.` / `text_encoder.` prefixes) of the tiny kohya LoRA."""
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    folder = tmp_path / "loras"
    folder.mkdir()
    shutil.copy(tiny.lora_dir / f"{LORA_NAME}.safetensors", folder / "kohya.safetensors")
    pipe = load_pipeline(str(tiny.checkpoint), device="cpu")
    pipe.load_lora_weights(str(folder), weight_name="kohya.safetensors", adapter_name="k")
    StableDiffusionPipeline.save_lora_weights(
        str(tmp_path / "peft"), unet_lora_layers=get_peft_model_state_dict(pipe.unet, adapter_name="k"),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder, adapter_name="k"))
    shutil.copy(tmp_path / "peft" / "pytorch_lora_weights.safetensors", folder / "peft.safetensors")
    assert any(".lora_A." in key for key in load_file(str(folder / "peft.safetensors")))
    engine = DiffusersEngine(load_pipeline(str(tiny.checkpoint), device="cpu"), folder)
    images = [np.asarray(engine.txt2img(GenerateRequest("a forest", "", (LoraTag(name, 1.0),), 3, 2, 5.0, "euler",
                                                        64, 64))) for name in ("kohya", "peft", "kohya")]
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], images[2])


@pytest.mark.parametrize("part,layout", [("oft_blocks", "LyCORIS OFT"), ("lora_mid.weight", "CP decomposition"),
                                         ("diff", "LyCORIS full (diff)")])
def test_a_layout_this_engine_cannot_load_is_named_before_any_pass(fresh, part, layout):
    engine, folder = fresh
    key = targets(engine.pipe)[0][0]
    save_file({f"{key}.{part}": torch.zeros(4, 4), f"{key}.alpha": torch.tensor(1.0)},
              str(folder / "other.safetensors"))
    with pytest.raises(ModelNotFoundError, match=re.escape(layout)):
        engine.check_loras(["other"])


def test_a_lycoris_file_for_another_model_says_so(fresh):
    engine, folder = fresh
    save_file({"lora_unet_input_blocks_99_1_proj_in.hada_w1_a": torch.zeros(4, 4)}, str(folder / "xl.safetensors"))
    with pytest.raises(ModelNotFoundError, match="another model type"):
        engine.use_loras([LoraTag("xl", 1.0)])


def test_a_lora_and_a_loha_on_the_same_layers_both_act(fresh):
    """Two files of two layouts in one job: each layer computes base + both weight changes."""
    engine, folder = fresh
    generator = torch.Generator().manual_seed(6)
    key, module = targets(engine.pipe)[0]
    down, up = torch.randn(RANK, module.in_features) * 0.3, torch.randn(module.out_features, RANK) * 0.3
    save_file({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up}, str(folder / "plain.safetensors"))
    modules = write(folder, "hada", {key: loha(module, generator)})
    hada = webui_delta(modules[key], module.weight)
    engine.use_loras([LoraTag("plain", 1.0)])
    engine.use_loras([LoraTag("plain", 1.0), LoraTag("hada", 1.0)])
    layer = dict(targets(engine.pipe))[key]  # `module` is the model's own layer inside the adapter layers
    x, expected = with_weight(module, module.weight + up @ down + hada, generator)
    with torch.no_grad():
        assert torch.allclose(layer(x), expected, atol=1e-5)
