"""Write a diffusers SD pipeline as one `.safetensors` in the WebUI's (original ldm) layout.

diffusers only converts ldm -> diffusers; tests need the other direction to make the
single-file checkpoints users have. The key mapping follows the SD 1.x/2.x layout.
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
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
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


def write_ldm_checkpoint(pipe, path: Path) -> None:
    """Save `pipe`'s UNet, VAE and text encoder in the WebUI's single-file layout."""
    layers = pipe.unet.config.layers_per_block
    up_attention = {i for i, kind in enumerate(pipe.unet.config.up_block_types) if "CrossAttn" in kind}
    tensors: dict[str, torch.Tensor] = {}
    for key, value in pipe.unet.state_dict().items():
        tensors["model.diffusion_model." + unet_key(key, layers, up_attention)] = value
    blocks = len(pipe.vae.config.block_out_channels)
    for key, value in pipe.vae.state_dict().items():
        name, as_conv = vae_key(key, blocks)
        tensors["first_stage_model." + name] = value[..., None, None] if as_conv and value.ndim == 2 else value
    for key, value in pipe.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key
        tensors["cond_stage_model.transformer." + key] = value
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
