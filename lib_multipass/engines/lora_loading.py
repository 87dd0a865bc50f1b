"""LoRA files of every layout the standalone engine loads, onto a diffusers pipeline.

Every kohya-named file (LoRA, LoCon, LoHa, LoKr) is mapped onto the model by one lookup:
the module whose path, `.` written `_`, is the key's name (`lora_unet_down_blocks_0_..._to_q`,
`lora_te_text_model_..._q_proj`; original SD block names renumbered by diffusers' helpers).
LoRA/LoCon then go through diffusers' loader as peft keys. diffusers loads no LoHa and no
kohya-named LoKr: peft's LoHa/LoKr layers are put on those modules and the file's factors
placed in them as they are, so whatever shapes the trainer chose, the product is the
WebUI's (`(w1a @ w1b) * (w2a @ w2b)`, `kron(w1, w2)`, CP cores included), scaled by
alpha / rank as the WebUI scales it. All are peft tuner layers: `LoraSwitch` switches them
alike, and the base weights are never touched. peft/diffusers files go to diffusers as
they are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelNotFoundError
from ..lora_files import lora_layout

log = logging.getLogger(__name__)

#: the factors of each layout, as LyCORIS names them in files and peft names its parameters
FACTORS = {
    "LyCORIS LoHa": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"),
    "LyCORIS LoKr": ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"),
}
#: the block names left after diffusers' renumbering of original SD names
SGM_BLOCKS = (("lora_unet_input_blocks_", "lora_unet_down_blocks_"), ("lora_unet_middle_block_", "lora_unet_mid_block_"),
              ("lora_unet_output_blocks_", "lora_unet_up_blocks_"))
#: kohya's prefix of each pipeline model's modules (SDXL: te1, te2)
PREFIXES = (("unet", "lora_unet_"), ("text_encoder", "lora_te_"), ("text_encoder", "lora_te1_"),
            ("text_encoder_2", "lora_te2_"))


def load_lora_file(pipe: Any, path: Path, adapter: str) -> None:
    """Load the LoRA file at `path` as adapter `adapter` (its layout was checked before the
    job by `lora_files.check_lora_file`)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    layout = lora_layout(list(tensors), str(path))
    if layout in FACTORS:
        load_lycoris(pipe, kohya_groups(pipe, tensors, str(path)), adapter, layout)
    elif layout.startswith("kohya") and not any(key.endswith(".dora_scale") for key in tensors):
        pipe.load_lora_weights(peft_lora(kohya_groups(pipe, tensors, str(path))), adapter_name=adapter)
    else:  # peft/diffusers keys, and kohya DoRA: diffusers' own converters
        pipe.load_lora_weights(tensors, adapter_name=adapter, unet_config=pipe.unet.config)


def kohya_modules(pipe: Any) -> dict[str, tuple[str, str]]:
    """kohya name -> (pipeline model, module path) for every module a LoRA may target."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found: dict[str, tuple[str, str]] = {}
    for attr, prefix in PREFIXES:
        model = getattr(pipe, attr, None)
        if model is None:
            continue
        flat = attr.startswith("text_encoder") and not hasattr(model, "text_model")  # newer transformers' CLIP
        for path, module in model.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, BaseTunerLayer)):  # wrapped by an earlier file
                found[prefix + ("text_model_" if flat else "") + path.replace(".", "_")] = (attr, path)
    return found


Groups = dict[tuple[str, str], dict[str, torch.Tensor]]  # (pipeline model, module path) -> its tensors by part


def kohya_groups(pipe: Any, tensors: Mapping[str, torch.Tensor], path: str) -> Groups:
    """The file's tensors by the module they change, found by kohya name: the module's own
    path with `_` for `.` (SD 1.x UNets and every text encoder), or an original SD block name
    (`input_blocks_4_1_...`, SDXL trainers) renumbered by diffusers' helpers."""
    from diffusers.loaders.lora_conversion_utils import _convert_unet_lora_key, _maybe_map_sgm_blocks_to_diffusers

    tensors = _maybe_map_sgm_blocks_to_diffusers(dict(tensors), pipe.unet.config)  # input_blocks_4_1 -> ..._1_attentions_0
    modules = kohya_modules(pipe)
    known = set(modules.values())
    groups: Groups = {}
    unknown: set[str] = set()
    for key, value in tensors.items():
        name, _, part = key.partition(".")
        for sgm, diffusers_name in SGM_BLOCKS:
            name = name.replace(sgm, diffusers_name)
        where = modules.get(name)
        if where is None and name.startswith("lora_unet_"):  # SDXL resnets: in_layers_2 -> conv1, ...
            guess = ("unet", _convert_unet_lora_key(f"{name}.lora_down.weight").removesuffix(".lora.down.weight"))
            where = guess if guess in known else None
        if where is None:
            unknown.add(name)
        else:
            groups.setdefault(where, {})[part.removesuffix(".weight")] = value
    if not groups:
        raise ModelNotFoundError(f"LoRA file {path!r}: none of its {len(unknown)} layers is in this model (e.g. "
                                 f"{sorted(unknown)[0]!r}); is it made for another model type?")
    if unknown:
        log.warning("LoRA file %s: %d of %d layers are not in this model and are left out (e.g. %s)",
                    path, len(unknown), len(unknown) + len(groups), sorted(unknown)[0])
    return groups


def peft_lora(groups: Groups) -> dict[str, torch.Tensor]:
    """kohya LoRA/LoCon as peft keys (`unet.<path>.lora_A.weight`), alpha / rank taken into
    the up factor, so diffusers loads it without guessing the format from the names."""
    out: dict[str, torch.Tensor] = {}
    for (attr, path), parts in groups.items():
        down, up = parts["lora_down"], parts["lora_up"]
        alpha = parts.get("alpha")
        scale = float(alpha.item()) / down.shape[0] if alpha is not None else 1.0  # no alpha: alpha = rank
        out[f"{attr}.{path}.lora_A.weight"] = down
        out[f"{attr}.{path}.lora_B.weight"] = up * scale if scale != 1.0 else up
    return out


def scale_of(parts: Mapping[str, torch.Tensor], layout: str) -> float:
    """alpha / rank, as the WebUI's Lora extension scales a LyCORIS module (1 without either:
    a LoKr of full factors has no rank)."""
    if "scale" in parts:
        return float(parts["scale"].item())
    low = parts["hada_w1_b"] if layout == "LyCORIS LoHa" else parts.get("lokr_w2_b", parts.get("lokr_w1_b"))
    dim = None if low is None else low.shape[0]
    alpha = parts.get("alpha")
    return float(alpha.item()) / dim if alpha is not None and dim else 1.0


def load_lycoris(pipe: Any, groups: Groups, adapter: str, layout: str) -> None:
    """peft's LoHa/LoKr layers on the modules of `groups`, holding the file's factors."""
    from peft import LoHaConfig, LoKrConfig, inject_adapter_in_model

    config_class = LoHaConfig if layout == "LyCORIS LoHa" else LoKrConfig
    for attr in {attr for attr, _ in groups}:
        model = getattr(pipe, attr)
        targets = {path: parts for (owner, path), parts in groups.items() if owner == attr}
        inject_adapter_in_model(config_class(r=1, alpha=1, target_modules=list(targets)), model, adapter_name=adapter)
        for target, parts in targets.items():
            _place(model.get_submodule(target), parts, adapter, layout)


def _place(layer: Any, parts: Mapping[str, torch.Tensor], adapter: str, layout: str) -> None:
    """The file's factors in place of the ones peft made (its shapes follow its own rules)."""
    weight = layer.get_base_layer().weight
    for name in FACTORS[layout]:
        store = getattr(layer, name)
        if name in parts:
            store[adapter] = torch.nn.Parameter(parts[name].to(weight.device, weight.dtype), requires_grad=False)
        elif adapter in store:
            del store[adapter]
    scale = scale_of(parts, layout)
    layer.r[adapter], layer.alpha[adapter], layer.scaling[adapter] = 1, scale, scale  # set_scale: weight x alpha / r
