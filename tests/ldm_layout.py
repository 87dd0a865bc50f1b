"""Write a diffusers SD or SDXL pipeline as one `.safetensors` in the WebUI's (original
ldm/sgm) layout.

diffusers only converts ldm -> diffusers; tests need the other direction to make the
single-file checkpoints users have. The key mapping follows the SD 1.x/2.x layout; SDXL adds
its size embedding (`label_emb`) and two text encoders (`conditioner.embedders.0` in
transformers' layout, `.1` in open_clip's).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
VAE_RESNET = [("conv_shortcut", "nin_shortcut")]
VAE_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _rename(rest: str, table: list[tuple[str, str]]) -> str:
    for old, new in table:
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def unet_key(key: str, layers: int, up_attention: set[int]) -> str:
    per = layers + 1
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
    head, _, tail = key.rpartition(".")
    if head in fixed:
        return f"{fixed[head]}.{tail}"
    if m := re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"input_blocks.{per * int(m[1]) + int(m[2]) + 1}.0.{_rename(m[3], RESNET)}"
    if m := re.match(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
        return f"input_blocks.{per * int(m[1]) + int(m[2]) + 1}.1.{m[3]}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{per * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"middle_block.{2 * int(m[1])}.{_rename(m[2], RESNET)}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"output_blocks.{per * int(m[1]) + int(m[2])}.0.{_rename(m[3], RESNET)}"
    if m := re.match(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
        return f"output_blocks.{per * int(m[1]) + int(m[2])}.1.{m[3]}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        block = int(m[1])
        return f"output_blocks.{per * block + layers}.{2 if block in up_attention else 1}.conv.{m[2]}"
    raise KeyError(f"no ldm name for UNet key {key}")


def vae_key(key: str, blocks: int) -> tuple[str, bool]:
    """ldm name, and whether the tensor is a mid-attention linear that ldm stores as 1x1 conv."""
    rules = [
        (r"(encoder|decoder)\.conv_norm_out\.(.*)", lambda m: f"{m[1]}.norm_out.{m[2]}"),
        (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
         lambda m: f"encoder.down.{m[1]}.block.{m[2]}.{_rename(m[3], VAE_RESNET)}"),
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)", lambda m: f"encoder.down.{m[1]}.downsample.{m[2]}"),
        (r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)",
         lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.block.{m[2]}.{_rename(m[3], VAE_RESNET)}"),
        (r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)", lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.upsample.{m[2]}"),
        (r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)",
         lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}.{_rename(m[3], VAE_RESNET)}"),
        (r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", lambda m: f"{m[1]}.mid.attn_1.{_rename(m[2], VAE_ATTENTION)}"),
    ]
    for pattern, build in rules:
        if m := re.fullmatch(pattern, key):
            return build(m), "mid_block.attentions" in key and "group_norm" not in key
    return key, False


def _unet_and_vae(pipe, unet_prefix: str = "model.diffusion_model.") -> dict[str, torch.Tensor]:
    layers = pipe.unet.config.layers_per_block
    up_attention = {i for i, kind in enumerate(pipe.unet.config.up_block_types) if "CrossAttn" in kind}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in pipe.unet.state_dict().items():
        tensors[unet_prefix + unet_key(key, layers, up_attention)] = value
    blocks = len(pipe.vae.config.block_out_channels)
    for key, value in pipe.vae.state_dict().items():
        name, as_conv = vae_key(key, blocks)
        tensors["first_stage_model." + name] = value[..., None, None] if as_conv and value.ndim == 2 else value
    return tensors


def _clip(encoder, prefix: str) -> dict[str, torch.Tensor]:
    """A transformers CLIP text encoder's weights under `prefix`, with `text_model.` as in the files."""
    out = {}
    for key, value in encoder.state_dict().items():
        if "position_ids" not in key and not key.startswith("text_projection"):
            out[prefix + (key if key.startswith("text_model.") else "text_model." + key)] = value
    return out


OPEN_CLIP = [("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]


def _open_clip(encoder, prefix: str) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection's weights in open_clip's layout (SDXL's second encoder)."""
    state = {k.removeprefix("text_model."): v for k, v in encoder.state_dict().items() if "position_ids" not in k}
    out = {prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"],
           prefix + "text_projection": state["text_projection.weight"].T}
    for i in range(encoder.config.num_hidden_layers):
        layer = f"encoder.layers.{i}."
        block = f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{layer}self_attn.{p}_proj.{kind}"] for p in "qkv"])
            for old, new in OPEN_CLIP:
                out[f"{block}{new}.{kind}"] = state[f"{layer}{old}.{kind}"]
    return out


def write_ldm_checkpoint(pipe, path: Path) -> None:
    """Save `pipe`'s UNet, VAE and text encoder(s) in the WebUI's single-file layout."""
    tensors = _unet_and_vae(pipe)
    if getattr(pipe, "text_encoder_2", None) is not None:
        tensors.update(_clip(pipe.text_encoder, "conditioner.embedders.0.transformer."))
        tensors.update(_open_clip(pipe.text_encoder_2, "conditioner.embedders.1.model."))
    else:
        tensors.update(_clip(pipe.text_encoder, "cond_stage_model.transformer."))
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
