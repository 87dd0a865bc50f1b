#!/usr/bin/env python3
"""Tiny random LoRAs, a CLIPSeg folder and (optionally) a ControlNet for the tiny WebUI models.

Companion of ``tiny_webui_models.py`` (run that first: this script reads the tiny checkpoints
it wrote).  Run it with the WebUI's own venv (safetensors, transformers 4.30, the WebUI's
``ldm`` repository and, for ``--controlnet``, the sd-webui-controlnet extension come from there):

    <webui>/venv/bin/python tiny_webui_extras.py --webui-dir <webui> [--controlnet] [--seed 0]

Importable too: ``main(webui_dir, controlnet=False, seed=0) -> dict[str, Path]``.
Every weight is drawn from a seeded generator: the files are the same on every run.

What it writes into the WebUI checkout:

* ``models/Lora/tiny-sd1-lora.safetensors``: a kohya-format LoRA (``<key>.lora_down.weight``,
  ``<key>.lora_up.weight``, ``<key>.alpha``, kohya's ``ss_*`` metadata) for tiny-sd1.  UNet keys
  use the diffusers block names real SD 1.x LoRAs use (``lora_unet_down_blocks_0_attentions_0_
  transformer_blocks_0_attn1_to_q``, ``lora_unet_mid_block_attentions_0_proj_in``,
  ``lora_unet_up_blocks_1_attentions_2_...``), which the built-in Lora extension converts with
  ``convert_diffusers_name_to_compvis`` to the ldm module names (``diffusion_model_input_blocks_1_1_
  ...``); text encoder keys are ``lora_te_text_model_encoder_layers_<n>_{self_attn_{q,k,v,out}_proj,
  mlp_fc1,mlp_fc2}``.  Targets: every attention projection, feed-forward and proj_in/proj_out of
  the UNet's spatial transformers (proj_in/out are 1x1 convolutions in SD 1.x) and every linear
  layer of the text encoder.
* ``models/Lora/tiny-sdxl-lora.safetensors``: the same for tiny-sdxl with the key style of
  kohya's SDXL LoRAs: ``lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k`` (ldm names,
  mapped by replacing ``lora_unet`` with ``diffusion_model``), ``lora_te1_text_model_encoder_
  layers_<n>_...`` (CLIP-L, -> ``0_transformer_text_model_...``) and ``lora_te2_text_model_
  encoder_layers_<n>_...`` (open_clip, -> ``1_model_transformer_resblocks_<n>_{attn,mlp_c_fc,
  mlp_c_proj}``; q/k/v/out of its nn.MultiheadAttention all present, which the WebUI needs).
  Before writing, every key is run through the WebUI's own name conversion (the function and
  regex tables are read out of ``extensions-builtin/Lora/networks.py``) and the lookup chain of
  its ``load_network``; a key that would not match a module of the checkpoint is an error
  (the WebUI itself only logs unmatched keys at DEBUG level).
  The deltas are about as large as the weights themselves, so ``<lora:NAME:1>`` changes the
  image a lot.
* ``models/clipseg/``: a random CLIPSeg (``CLIPSegForImageSegmentation`` from a tiny
  ``CLIPSegConfig``: width 32, 2 layers, 64 px input, patch 16), weights as ``model.safetensors``
  (the WebUI's safe unpickler rejects pickles written by a recent torch), and a
  ``CLIPSegProcessor`` whose tokenizer is the real CLIP BPE tokenizer copied from
  ``models/tiny-clip-text-encoder/`` (``model_max_length`` 77, so ``padding="max_length"`` works
  under transformers 4.30).  Loaded and run once on a 64x64 image with ``["person"]`` as a check.
  The last layer is rescaled so that for "person" the logits have mean 0 and spread ~1 on noise
  images: masks cut at the project's default 0.4 are partial blobs (other terms shift the whole
  map: "face" is mostly below, long prompts mostly above).
* with ``--controlnet``, when ``extensions/sd-webui-controlnet`` is installed:
  ``models/ControlNet/control_tiny_sd1_openpose.safetensors`` + ``.yaml`` (cldm format, like the
  extension's old ``models/cldm_v15.yaml``): a ControlNet for tiny-sd1 built by instantiating the
  extension's own ``scripts/cldm.py`` ``ControlNet`` class (so the key set is exactly what it
  builds), all weights random, zero convolutions included, hint path strengthened so the hint
  image matters.  Its shape is not tiny-sd1's: the extension's UNet hook always has 13
  residual slots for SD 1.x (see ``CONTROLNET_PARAMS``).  sd-webui-controlnet 1.1.4xx ignores a
  yaml beside a model (it builds every SD 1.x ControlNet with SD 1.5's hard-coded shape), so
  this step also patches ``scripts/controlnet_model_guess.py`` of the installed extension
  (idempotent, lines marked ``tiny-webui patch``; undo with ``git checkout`` there) to read
  ``<model>.yaml`` as versions before 1.1.4xx did.  The extension lists the model as
  ``control_tiny_sd1_openpose [<sd_models.model_hash>]`` (``controlnet_api_name()``; with the
  default seed ``control_tiny_sd1_openpose [d93311cc]``).  Without the extension the step is
  skipped with a message.

Installing sd-webui-controlnet 1.1.455 (= main 56cec5b2 of Mikubill/sd-webui-controlnet; the
mirror has no 1.1.455 tag) and what it imports at start-up, into the WebUI venv without letting
pip touch torch:

    git clone -q /work/.mirror/Mikubill+sd-webui-controlnet/repo <webui>/extensions/sd-webui-controlnet
    git -C <webui>/extensions/sd-webui-controlnet checkout -q 56cec5b2958edf3b1807b7e7b2b1b5186dbd2f81
    <webui>/venv/bin/pip install --no-deps controlnet_aux==0.0.9 addict yapf svglib fvcore

and start the WebUI with ``--skip-prepare-environment`` (or ``--skip-install``), so that the
extension's install.py does not pip-install its requirements.txt (mediapipe, albumentations,
``timm<=0.9.5``, ...) at start-up.  Those five are enough for start-up, the /controlnet/* API and
units with ``module: "none"`` (a ready hint); preprocessors (openpose_full, depth, ...) need
more packages and annotator weights from the Hub.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path

SD1_LORA = "tiny-sd1-lora"
SDXL_LORA = "tiny-sdxl-lora"
CONTROLNET_NAME = "control_tiny_sd1_openpose"
LORA_RANK = 4
LORA_ALPHA = 2.0          # kohya's usual alpha = rank / 2: the WebUI scales the delta by alpha / rank
LORA_STRENGTH = 1.0       # delta std ~ LORA_STRENGTH / sqrt(fan_in), the scale of the weights themselves

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")

# ldm module names (relative to the UNet) that get LoRA weights: the spatial transformers.
_UNET_TARGET = re.compile(
    r"^(?P<block>input_blocks\.\d+\.1|middle_block\.1|output_blocks\.\d+\.1)\."
    r"(?P<rest>proj_in|proj_out|transformer_blocks\.\d+\.(?:attn[12]\.(?:to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2))$"
)
_CLIP_TARGET = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.(self_attn\.[qkv]_proj|self_attn\.out_proj|mlp\.fc1|mlp\.fc2)$")
_OPENCLIP_TARGET = re.compile(
    r"^model\.transformer\.resblocks\.(\d+)\.(attn\.in_proj_weight|attn\.out_proj\.weight|mlp\.c_fc\.weight|mlp\.c_proj\.weight)$")
# open_clip module -> the diffusers/transformers name kohya's lora_te2 keys use
_OPENCLIP_KOHYA = {"attn.out_proj.weight": "self_attn_out_proj", "mlp.c_fc.weight": "mlp_fc1", "mlp.c_proj.weight": "mlp_fc2"}


# --------------------------------------------------------------------------- WebUI name mapping

def load_webui_name_conversion(webui: Path):
    """``convert_diffusers_name_to_compvis`` and ``re_x_proj`` of the WebUI's Lora extension,
    executed from its source (importing networks.py would pull in gradio and the whole WebUI)."""
    source = (webui / "extensions-builtin" / "Lora" / "networks.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    wanted = {"re_digits", "re_x_proj", "re_compiled", "suffix_conversion"}
    body = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in wanted for t in node.targets):
            body.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name == "convert_diffusers_name_to_compvis":
            body.append(node)
    namespace: dict = {"re": re}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(webui / "extensions-builtin/Lora/networks.py"), "exec"), namespace)
    if "convert_diffusers_name_to_compvis" not in namespace:
        raise RuntimeError("convert_diffusers_name_to_compvis not found in the WebUI's networks.py")
    return namespace["convert_diffusers_name_to_compvis"], namespace["re_x_proj"]


def webui_lookup(lora_key: str, mapping, convert, re_x_proj) -> str | None:
    """The module name ``networks.load_network`` (WebUI 1.10) finds for a LoRA key without its
    ``.lora_down.weight``-style suffix, or None (the WebUI then skips the key)."""
    is_sd2 = "model_transformer_resblocks" in mapping
    key = convert(lora_key, is_sd2)
    if key in mapping:
        return key
    m = re_x_proj.match(key)
    if m and m.group(1) in mapping:
        return m.group(1)
    if "lora_unet" in lora_key:
        key = lora_key.replace("lora_unet", "diffusion_model")
        return key if key in mapping else None
    if "lora_te1_text_model" in lora_key:
        for replacement in ("0_transformer_text_model", "transformer_text_model"):
            key = lora_key.replace("lora_te1_text_model", replacement)
            if key in mapping:
                return key
    return None


def checkpoint_modules(checkpoint: Path, sdxl: bool) -> dict[str, list[int]]:
    """The WebUI's ``network_layer_mapping`` names of the checkpoint's modules -> weight shape.

    Names as ``assign_network_names_to_compvis_modules`` makes them: UNet modules under
    ``diffusion_model_...``; SD1 text encoder modules of ``cond_stage_model.wrapped``
    (``transformer_text_model_...``); SDXL text encoder modules ``<embedder index>_...``."""
    from safetensors import safe_open

    modules: dict[str, list[int]] = {}
    with safe_open(str(checkpoint), "pt") as f:
        for key in f.keys():
            if key.startswith("model.diffusion_model."):
                path = key[len("model."):]
            elif not sdxl and key.startswith("cond_stage_model."):
                path = key[len("cond_stage_model."):]
            elif sdxl and key.startswith("conditioner.embedders."):
                index, path = key[len("conditioner.embedders."):].split(".", 1)
                path = f"{index}.{path}"
            else:
                continue
            module, param = path.rsplit(".", 1)
            if param == "weight" or param == "in_proj_weight":
                modules[module.replace(".", "_")] = list(f.get_slice(key).get_shape())
    return modules


# --------------------------------------------------------------------------- LoRA targets

def _sd1_unet_name(block: str) -> str:
    """ldm spatial-transformer block -> diffusers name (inverse of the WebUI's conversion)."""
    kind, *numbers = block.split(".")
    if kind == "middle_block":
        return "mid_block_attentions_0"
    index = int(numbers[0])
    if kind == "input_blocks":
        return f"down_blocks_{(index - 1) // 3}_attentions_{(index - 1) % 3}"
    return f"up_blocks_{index // 3}_attentions_{index % 3}"


def _select_targets(checkpoint: Path, sdxl: bool) -> list[tuple[str, list[int]]]:
    from safetensors import safe_open

    out: list[tuple[str, list[int]]] = []
    with safe_open(str(checkpoint), "pt") as f:
        keys = sorted(f.keys())
        for key in keys:
            if key.startswith("model.diffusion_model.") and key.endswith(".weight"):
                m = _UNET_TARGET.match(key[len("model.diffusion_model."):-len(".weight")])
                if not m:
                    continue
                rest = m["rest"].replace(".", "_")
                if sdxl:
                    name = f"lora_unet_{m['block'].replace('.', '_')}_{rest}"
                else:
                    name = f"lora_unet_{_sd1_unet_name(m['block'])}_{rest}"
                out.append((name, list(f.get_slice(key).get_shape())))
                continue
            prefix = "conditioner.embedders.0.transformer." if sdxl else "cond_stage_model.transformer."
            if key.startswith(prefix) and key.endswith(".weight"):
                m = _CLIP_TARGET.match(key[len(prefix):-len(".weight")])
                if m:
                    te = "lora_te1" if sdxl else "lora_te"
                    out.append((f"{te}_text_model_encoder_layers_{m[1]}_{m[2].replace('.', '_')}",
                                list(f.get_slice(key).get_shape())))
                continue
            prefix = "conditioner.embedders.1."
            if sdxl and key.startswith(prefix):
                m = _OPENCLIP_TARGET.match(key[len(prefix):])
                if not m:
                    continue
                base = f"lora_te2_text_model_encoder_layers_{m[1]}"
                shape = list(f.get_slice(key).get_shape())
                if m[2] == "attn.in_proj_weight":  # nn.MultiheadAttention: q, k, v = thirds of in_proj
                    out += [(f"{base}_self_attn_{p}_proj", [shape[1], shape[1]]) for p in "qkv"]
                else:
                    out.append((f"{base}_{_OPENCLIP_KOHYA[m[2]]}", shape))
    return sorted(out)


def check_lora_keys(webui: Path, checkpoint: Path, sdxl: bool, names: list[str]):
    """Map every key the way the WebUI does; raise if one would not match a checkpoint module.
    Returns ({key: module name}, {module name: weight shape})."""
    convert, re_x_proj = load_webui_name_conversion(webui)
    mapping = checkpoint_modules(checkpoint, sdxl)
    matched, failed = {}, []
    for name in names:
        module = webui_lookup(name, mapping, convert, re_x_proj)
        if module is None:
            failed.append(name)
        else:
            matched[name] = module
    if failed:
        raise RuntimeError(f"{len(failed)} LoRA keys would not match a module of {checkpoint.name}: {failed[:5]}")
    return matched, mapping


def _check_shapes(targets, matched, mapping) -> None:
    for name, shape in targets:
        module_shape = mapping[matched[name]]
        if name.endswith(("_q_proj", "_k_proj", "_v_proj")) and module_shape == [3 * shape[0], shape[1]]:
            continue  # a third of nn.MultiheadAttention's in_proj
        if module_shape != shape:
            raise RuntimeError(f"{name}: module {matched[name]} has shape {module_shape}, not {shape}")


def save_safetensors_sorted(tensors: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors.torch.save_file, but byte-for-byte reproducible: safetensors writes the
    ``__metadata__`` entries in hash-map order (differs between runs), so the header is
    re-serialized with sorted keys (offsets are explicit; the data part is unchanged)."""
    import struct

    from safetensors.torch import save

    blob = save(tensors, metadata=metadata)
    size = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data part stays 8-byte aligned, as safetensors writes it
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + blob[8 + size:])


def write_lora(webui: Path, checkpoint: Path, path: Path, sdxl: bool, seed: int) -> Path:
    import torch
    targets = _select_targets(checkpoint, sdxl)
    if not targets:
        raise RuntimeError(f"no LoRA target modules found in {checkpoint}")
    matched, mapping = check_lora_keys(webui, checkpoint, sdxl, [name for name, _ in targets])
    _check_shapes(targets, matched, mapping)
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    up_scale = LORA_STRENGTH * LORA_RANK / LORA_ALPHA / LORA_RANK ** 0.5
    for name, shape in targets:
        out_features, in_features = shape[0], shape[1]
        kernel = [1] * (len(shape) - 2)  # 1x1 convolutions (SD1 proj_in/proj_out): 4-d weights
        down = torch.randn(LORA_RANK, in_features, generator=generator) * in_features ** -0.5
        up = torch.randn(out_features, LORA_RANK, generator=generator) * up_scale
        tensors[f"{name}.lora_down.weight"] = down.reshape(LORA_RANK, in_features, *kernel).contiguous()
        tensors[f"{name}.lora_up.weight"] = up.reshape(out_features, LORA_RANK, *kernel).contiguous()
        tensors[f"{name}.alpha"] = torch.tensor(LORA_ALPHA)
    metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(LORA_RANK),
        "ss_network_alpha": str(LORA_ALPHA),
        "ss_base_model_version": "sdxl_base_v1-0" if sdxl else "sd_v1",
        "ss_output_name": path.stem,
        "ss_sd_model_name": checkpoint.name,
        "ss_resolution": "(64, 64)",
        "ss_v2": "False",
    }
    save_safetensors_sorted(tensors, path, metadata)
    print(f"{path.name}: {len(targets)} modules "
          f"({sum(n.startswith('lora_unet') for n, _ in targets)} UNet), rank {LORA_RANK}, alpha {LORA_ALPHA}")
    return path


# --------------------------------------------------------------------------- CLIPSeg

def build_clipseg(webui: Path, seed: int) -> Path:
    """A random tiny CLIPSeg + processor in ``models/clipseg`` (weights as model.safetensors)."""
    import torch
    from transformers import (CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, CLIPTokenizer,
                              ViTImageProcessor)

    text_dir = webui / "models" / "tiny-clip-text-encoder"
    if not (text_dir / "vocab.json").is_file():  # a Forge checkout: its tiny model needs no such folder
        from tiny_webui_models import build_tiny_text_encoder_dir  # beside this file

        build_tiny_text_encoder_dir(text_dir)
    folder = webui / "models" / "clipseg"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    tokenizer = CLIPTokenizer.from_pretrained(str(text_dir), model_max_length=77)
    vocab_size = len(tokenizer)
    width = 32
    text = dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=width, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=64, patch_size=16)
    config = CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=width, extract_layers=[1],
                           reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32)
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(config).eval()
    up = model.decoder.transposed_convolution  # the last layer: logits = up(features)
    with torch.no_grad():  # flat within a patch: random masks come out as blobs, not pixel noise
        up.weight.copy_(up.weight.mean(dim=(2, 3), keepdim=True).expand_as(up.weight))
    image_processor = ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer)
    _calibrate_clipseg(model, processor, seed)
    model.save_pretrained(str(folder), safe_serialization=True)
    processor.save_pretrained(str(folder))
    for pickle in folder.glob("*.bin"):
        raise RuntimeError(f"unexpected pickle {pickle} (weights must be safetensors)")
    return folder


def _calibrate_clipseg(model, processor, seed: int, term: str = "person") -> None:
    """Rescale the last layer so that, for ``term`` on seeded noise images, the logits have mean 0
    and a spatial spread of about 1: probabilities then spread around 0.5 within an image (masks
    cut at the project's default 0.4 are partial blobs, neither empty nor full).  Other terms
    shift the whole map (a random model's text conditioning mostly moves the mean)."""
    import numpy as np
    import torch
    from PIL import Image

    rng = np.random.default_rng(seed)
    smooth = [np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((16, 16, 1))) for _ in range(3)]
    noise = [rng.integers(0, 256, (64, 64, 3)) for _ in range(3)]
    images = [Image.fromarray(a.astype(np.uint8)) for a in smooth + noise]
    inputs = processor(text=[term] * len(images), images=images, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
        mean, spread = logits.mean(), logits.std(dim=(1, 2)).mean()
        up = model.decoder.transposed_convolution
        scale = 1.0 / float(spread)
        up.weight.mul_(scale)
        up.bias.sub_(mean).mul_(scale)


def check_clipseg(folder: Path) -> tuple[int, ...]:
    """Load the folder as the project's segmenter does and run it on a 64x64 image."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    processor = CLIPSegProcessor.from_pretrained(str(folder))
    model = CLIPSegForImageSegmentation.from_pretrained(str(folder)).eval()
    image = Image.fromarray((np.indices((64, 64)).sum(0) * 2 % 256).astype(np.uint8)).convert("RGB")
    inputs = processor(text=["person"], images=[image], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    if not torch.isfinite(logits).all():
        raise RuntimeError("CLIPSeg logits are not finite")
    print(f"clipseg: input_ids {tuple(inputs['input_ids'].shape)}, logits {tuple(logits.shape)}, "
          f"sigmoid range {torch.sigmoid(logits).min():.3f}..{torch.sigmoid(logits).max():.3f}")
    return tuple(logits.shape)


# --------------------------------------------------------------------------- ControlNet

CONTROLNET_EXTENSION = "sd-webui-controlnet"
PATCH_MARK = "tiny-webui patch"

# The ControlNet for tiny-sd1, in the layout of lllyasviel's cldm_v15.yaml.  sd-webui-controlnet's
# UNet hook (scripts/hook.py) always has 13 residual slots for SD 1.x (12 input blocks + middle,
# as SD 1.5) and pops them from the end: the middle block takes slot 12 and output block j takes
# slot 11 - j.  tiny-sd1 has 6 input blocks (channels 32, 32, 32, 32 (downsample), 64, 64) and a
# 64-channel middle block, so it reads slots 6..12.  A ControlNet shaped like tiny-sd1 (7 outputs,
# slots 0..6) would put its middle residual on output block 5 (64 vs 32 channels: an error).
# This one has 12 input blocks + middle = 13 outputs: 3 levels with 3, 4 and 2 res blocks,
# channel_mult [1, 1, 2], so outputs 6..12 have 32, 32, 32, 32 (downsample), 64, 64, 64
# channels: exactly tiny-sd1's skip connections (the hook resizes each residual to its block's
# resolution).  Only 2 downsamplings (SD 1.5's 3 would reach 1x1 for a 64 px image, where a
# 32-channel GroupNorm(32) fails for a batch of 1).  Everything else (width 32, 8 heads,
# attention at the first level, context 32) is tiny-sd1's.
CONTROLNET_PARAMS = {
    "image_size": 32, "in_channels": 4, "hint_channels": 3, "model_channels": 32,
    "attention_resolutions": [1], "num_res_blocks": [3, 4, 2], "channel_mult": [1, 1, 2], "num_heads": 8,
    "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 32, "use_checkpoint": False,
    "legacy": False,
}

# sd-webui-controlnet >= 1.1.4xx (since "sdxl support", #1952) ignores a yaml beside a model and
# builds every SD 1.x ControlNet with the hard-coded SD 1.5 shape (model_channels 320, ...), so
# no tiny ControlNet can load.  This patch of scripts/controlnet_model_guess.py brings back what
# older versions did: a ``<model>.yaml`` beside the model file sets the architecture.
_GUESS_ANCHOR = """    if 'input_hint_block.0.weight' in state_dict:
        if 'label_emb.0.0.bias' not in state_dict:
"""
_GUESS_PATCHED = """    if 'input_hint_block.0.weight' in state_dict:
        yaml_config = _yaml_config_beside(model_path, state_dict)  # tiny-webui patch
        if yaml_config is not None:  # tiny-webui patch: <model>.yaml sets the architecture
            config = yaml_config
        elif 'label_emb.0.0.bias' not in state_dict:
"""
_GUESS_HELPER = '''

def _yaml_config_beside(model_path, state_dict):  # tiny-webui patch
    """The ControlNet params of a cldm yaml (model.params.control_stage_config.params) next to
    the model file, as sd-webui-controlnet < 1.1.4xx used it; None without such a file."""
    override = os.path.splitext(model_path)[0] + ".yaml"
    if not os.path.isfile(override):
        return None
    import inspect
    from omegaconf import OmegaConf
    from scripts.cldm import ControlNet

    node = OmegaConf.to_container(OmegaConf.load(override), resolve=True)
    params = node.get("model", {}).get("params", {}).get("control_stage_config", {}).get("params", node)
    accepted = set(inspect.signature(ControlNet.__init__).parameters) - {"self", "use_fp16", "device"}
    config = {k: v for k, v in params.items() if k in accepted}
    config.setdefault("global_average_pooling", False)
    config["hint_channels"] = int(state_dict["input_hint_block.0.weight"].shape[1])
    logger.info(f"ControlNet config from {override}")
    return config
'''


def controlnet_extension(webui: Path) -> Path | None:
    """The installed sd-webui-controlnet, or None."""
    folder = webui / "extensions" / CONTROLNET_EXTENSION
    return folder if (folder / "scripts" / "cldm.py").is_file() else None


def patch_controlnet_extension(extension: Path) -> bool:
    """Apply the yaml-config patch (idempotent); True when the file was changed.
    Undo: ``git -C <extension> checkout scripts/controlnet_model_guess.py``."""
    path = extension / "scripts" / "controlnet_model_guess.py"
    text = path.read_text(encoding="utf-8")
    if PATCH_MARK in text:
        return False
    if text.count(_GUESS_ANCHOR) != 1:
        raise RuntimeError(f"{path}: the code to patch was not found (not sd-webui-controlnet 1.1.4xx?)")
    text = text.replace(_GUESS_ANCHOR, _GUESS_PATCHED).rstrip("\n") + "\n" + _GUESS_HELPER
    path.write_text(text, encoding="utf-8")
    return True


def _is_shadowed(name: str) -> bool:
    return name in ("scripts", "modules") or name.startswith(("scripts.", "modules."))


class _ExtensionImports:
    """Import the extension's ``scripts.cldm`` outside the WebUI: its only WebUI import,
    ``modules.devices``, is stubbed (used for device moves only); sgm comes from repositories/."""

    def __init__(self, webui: Path, extension: Path):
        self.extension = extension
        self.paths = [str(extension), str(webui / "repositories" / "generative-models"),
                      str(webui / "repositories" / "stable-diffusion-stability-ai")]

    def __enter__(self):
        import types

        import torch

        self.saved_path = list(sys.path)
        self.saved_modules = {k: v for k, v in sys.modules.items() if _is_shadowed(k)}
        for name in self.saved_modules:
            del sys.modules[name]
        sys.path[:0] = self.paths
        modules, devices = types.ModuleType("modules"), types.ModuleType("modules.devices")
        devices.cpu = torch.device("cpu")
        devices.dtype = devices.dtype_unet = torch.float32
        devices.get_device_for = lambda name: devices.cpu
        modules.devices = devices
        sys.modules["modules"], sys.modules["modules.devices"] = modules, devices
        # The extension's scripts/ has no __init__.py; generative-models' scripts/ package would win.
        package = types.ModuleType("scripts")
        package.__path__ = [str(self.extension / "scripts")]
        sys.modules["scripts"] = package
        return self

    def __exit__(self, *exc):
        for name in [k for k in sys.modules if _is_shadowed(k)]:
            del sys.modules[name]
        sys.modules.update(self.saved_modules)
        sys.path[:] = self.saved_path


def _randomize(model, generator) -> None:
    """Uniform(+-1/sqrt(fan_in)) everywhere, the zero convolutions included (a trained ControlNet
    has learnt them; zeros would make the hint do nothing); norms ~1 with small biases."""
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
            if module.weight is not None:
                module.weight.data = 1.0 + 0.1 * torch.randn(module.weight.shape, generator=generator)
                module.bias.data = 0.1 * torch.randn(module.bias.shape, generator=generator)
        elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv1d)):
            bound = module.weight[0].numel() ** -0.5
            module.weight.data = (torch.rand(module.weight.shape, generator=generator) * 2 - 1) * bound
            if module.bias is not None:
                module.bias.data = (torch.rand(module.bias.shape, generator=generator) * 2 - 1) * bound


def _strengthen_hint_block(model, generator, target_std: float = 0.5) -> None:
    """Make the hint matter.  With plain random weights the hint fades through the 8 convolutions
    of ``input_hint_block`` (the output is bias noise, the same for every hint).  He-uniform
    weights and small biases keep it, and the last convolution is scaled so that the embedded
    hint of a seeded test image has ``target_std`` (about that of the first block's features)."""
    import torch

    convs = [m for m in model.input_hint_block if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for conv in convs[:-1]:
            bound = (6.0 / conv.weight[0].numel()) ** 0.5
            conv.weight.copy_((torch.rand(conv.weight.shape, generator=generator) * 2 - 1) * bound)
            conv.bias.copy_((torch.rand(conv.bias.shape, generator=generator) * 2 - 1) * 0.1 * bound)
        hint = torch.rand(1, convs[0].in_channels, 8, 8, generator=generator)
        hint = torch.nn.functional.interpolate(hint, size=(64, 64), mode="nearest")
        features = model.input_hint_block(hint, None, None)
        scale = target_std / float(features.std())
        convs[-1].weight.mul_(scale)
        convs[-1].bias.mul_(scale)


def controlnet_api_name(path: Path) -> str:
    """The name sd-webui-controlnet lists: ``<stem> [<sd_models.model_hash>]`` (the old WebUI
    hash: sha256 of the 64 KiB at offset 1 MiB, first 8 hex digits)."""
    import hashlib

    with open(path, "rb") as f:
        f.seek(0x100000)
        return f"{path.stem} [{hashlib.sha256(f.read(0x10000)).hexdigest()[:8]}]"


def build_controlnet(webui: Path, seed: int) -> Path | None:
    """The tiny ControlNet (see CONTROLNET_PARAMS) + its cldm yaml in models/ControlNet/, and the
    yaml-config patch of the installed extension; None (with a message) without the extension."""
    import torch
    import yaml

    extension = controlnet_extension(webui)
    if extension is None:
        print(f"{CONTROLNET_EXTENSION} is not installed in {webui / 'extensions'}: no tiny ControlNet")
        return None
    if patch_controlnet_extension(extension):
        print(f"patched {extension / 'scripts' / 'controlnet_model_guess.py'} (a yaml beside the model sets its config)")
    with _ExtensionImports(webui, extension):
        from scripts.cldm import ControlNet  # the extension's own class: exactly its key set

        torch.manual_seed(seed)
        params = {k: v for k, v in CONTROLNET_PARAMS.items() if k != "image_size"}
        with contextlib.redirect_stdout(io.StringIO()):  # sgm's layer-by-layer construction log
            model = ControlNet(use_fp16=False, **params)
    generator = torch.Generator().manual_seed(seed)
    _randomize(model, generator)
    _strengthen_hint_block(model, generator)
    outputs = len(model.zero_convs) + 1
    if outputs != 13:
        raise RuntimeError(f"the tiny ControlNet has {outputs} outputs; the extension's SD 1.x hook needs 13")
    state = {k: v.detach().float().contiguous().clone() for k, v in model.state_dict().items()}
    path = webui / "models" / "ControlNet" / f"{CONTROLNET_NAME}.safetensors"
    save_safetensors_sorted(state, path)
    config = {"model": {"target": "cldm.cldm.ControlLDM", "params": {
        "control_key": "hint", "only_mid_control": False,
        "control_stage_config": {"target": "cldm.cldm.ControlNet", "params": dict(CONTROLNET_PARAMS)},
    }}}
    path.with_suffix(".yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    print(f"{path.name}: {sum(v.numel() for v in state.values())} parameters in {len(state)} tensors; "
          f"listed as {controlnet_api_name(path)!r}")
    return path


# --------------------------------------------------------------------------- main

def main(webui_dir, controlnet: bool = False, seed: int = 0) -> dict[str, Path]:
    """Build the extras for the WebUI checkout at ``webui_dir``; returns the written paths."""
    webui = Path(webui_dir).resolve()
    started = time.perf_counter()
    checkpoints = webui / "models" / "Stable-diffusion"
    written: dict[str, Path] = {}
    lora_dir = webui / "models" / "Lora"
    sd1 = checkpoints / "tiny-sd1.safetensors"
    if not sd1.is_file():
        raise FileNotFoundError(f"{sd1} is missing: run tiny_webui_models.py first")
    written["lora_sd1"] = write_lora(webui, sd1, lora_dir / f"{SD1_LORA}.safetensors", False, seed + 11)
    sdxl = checkpoints / "tiny-sdxl.safetensors"
    if sdxl.is_file():
        written["lora_sdxl"] = write_lora(webui, sdxl, lora_dir / f"{SDXL_LORA}.safetensors", True, seed + 12)
    else:
        print(f"{sdxl.name} not found: no SDXL LoRA")
    written["clipseg"] = build_clipseg(webui, seed + 13)
    check_clipseg(written["clipseg"])
    if controlnet:
        path = build_controlnet(webui, seed + 14)
        if path is not None:
            written["controlnet"] = path
    for key, path in written.items():
        print(f"{key}: {path}")
    print(f"tiny WebUI extras built in {time.perf_counter() - started:.1f} s")
    return written


def _parse(argv=None):
    from tiny_webui_models import webui_arguments  # beside this file

    def add(parser):
        parser.add_argument("--controlnet", action="store_true",
                            help="also build the tiny ControlNet (needs extensions/sd-webui-controlnet)")

    return webui_arguments(__doc__.split("\n\n")[0], add, argv)


if __name__ == "__main__":
    arguments = _parse()
    main(arguments.webui_dir, controlnet=arguments.controlnet, seed=arguments.seed)
