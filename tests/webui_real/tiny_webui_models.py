#!/usr/bin/env python3
"""Build tiny random models that a real AUTOMATIC1111 WebUI 1.10.x loads offline.

Run it with the WebUI's own venv (it imports the WebUI's `ldm`/`sgm` repositories,
transformers 4.30 and open_clip from there):

    <webui>/venv/bin/python tiny_webui_models.py --webui-dir <webui> [--hf-home DIR] [--no-sdxl]

What it writes (all random weights, fixed seed, so the files are the same on every run):

* ``$HF_HOME/hub/models--openai--clip-vit-large-patch14/...`` (with ``--hf-home``): the real
  CLIP BPE tokenizer (vocab.json, merges.txt, tokenizer_config.json,
  special_tokens_map.json) built from open_clip's ``bpe_simple_vocab_16e6.txt.gz``,
  plus the CLIP ViT-L/14 ``config.json``, in the Hugging Face hub cache layout.  With
  ``HF_HUB_OFFLINE=1`` this is what ``CLIPTokenizer.from_pretrained("openai/clip-vit-large-patch14")``
  finds.
* ``<webui>/models/tiny-clip-text-encoder/``: the same tokenizer files and a *tiny*
  ``CLIPTextConfig`` (width 32, 2 layers).  The tiny checkpoints' yaml files name this
  folder as the ``version`` of their CLIP-L text encoder; the WebUI then builds the
  text encoder from this config (``--do-not-download-clip`` / weights in the checkpoint)
  and keeps the real 49,408-token vocabulary, so prompts tokenize exactly as in real use.
* ``<webui>/models/Stable-diffusion/tiny-sd1.safetensors`` + ``tiny-sd1.yaml``: an SD 1.x
  model (ldm ``LatentDiffusion``).  The UNet has the shape of the diffusers tiny UNet the
  project's standalone tests use (block channels 32/64, 2 layers per block, cross
  attention in the first level and the middle block, context width 32), so the block
  numbering (input_blocks.1.1, output_blocks.3.1, ...) is the one SD 1.x LoRA key
  conversion assumes.  The VAE uses 32 channels at every level (the ldm VAE's GroupNorm
  has 32 groups) and keeps the 8x down-scaling the WebUI assumes.
* ``<webui>/models/Stable-diffusion/tiny-sdxl.safetensors`` + ``tiny-sdxl.yaml`` (unless
  ``--no-sdxl``): an SDXL model (sgm ``DiffusionEngine``): text encoder 1 = the tiny CLIP-L,
  text encoder 2 = open_clip ``ViT-S-32-alt`` (its smallest text tower, width 256), UNet
  with three levels (attention in levels 1 and 2, as SDXL), context width 32 + 256.
* ``<webui>/models/VAE-approx/vaeapprox-sdxl.pt`` (with SDXL, when missing): random weights
  for the WebUI's live-preview approximation network, which it would otherwise try to
  download for every SDXL generation.  Saved in torch's legacy format, which the WebUI's
  restricted unpickler accepts.

Random weights are re-drawn everywhere (also where ldm/sgm initialise to zero), and every
normalisation layer gets a random non-zero bias: with all-zero LayerNorm biases the
text encoder's output has a zero mean, and the WebUI's prompt-emphasis rescaling divides
0 by 0 (NaN).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import time
from pathlib import Path

CLIP_L_REPO = "openai/clip-vit-large-patch14"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# Tiny CLIP-L text encoder: width 32, 2 layers, 4 heads (as the project's diffusers tiny models).
TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
OPENCLIP_ARCH = "ViT-S-32-alt"   # open_clip's smallest text tower: width 256, 10 layers
OPENCLIP_WIDTH = 256              # its text width and its pooled (projection) width

# The VAE shared by both tiny models: 32 channels everywhere (GroupNorm(32)), 4 levels (8x).
TINY_VAE_DDCONFIG = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
    "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
}


# --------------------------------------------------------------------------- tokenizer

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode character table (the standard BPE trick).

    The order matters: the first 256 vocabulary ids follow it.  Printable bytes map to
    themselves and come first; the other bytes follow, mapped to chr(256 + n)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


def _open_clip_bpe_file() -> Path:
    import open_clip  # noqa: F401  (only to locate the file it ships)
    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"open_clip ships no BPE vocabulary at {path}")
    return path


def clip_tokenizer_files() -> dict[str, str]:
    """The four files of the real CLIP tokenizer (49,408 tokens), as text."""
    lines = gzip.open(_open_clip_bpe_file()).read().decode("utf-8").split("\n")
    # Line 0 is a version header; CLIP uses the next 49152 - 256 - 2 merges.
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    assert len(vocab) == 49408, len(vocab)

    def special(content: str) -> dict:
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}

    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        "errors": "replace", "add_prefix_space": False,
        "bos_token": special(BOS), "eos_token": special(EOS), "unk_token": special(EOS), "pad_token": EOS,
    }
    special_tokens_map = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
        "tokenizer_config.json": json.dumps(tokenizer_config, indent=2),
        "special_tokens_map.json": json.dumps(special_tokens_map, indent=2),
    }


def _text_config(hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, projection_dim=None) -> dict:
    return {
        "model_type": "clip_text_model", "architectures": ["CLIPTextModel"],
        "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
        "hidden_size": hidden_size, "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers, "num_attention_heads": num_attention_heads,
        "projection_dim": projection_dim or hidden_size, "layer_norm_eps": 1e-5,
        "initializer_range": 0.02, "initializer_factor": 1.0, "attention_dropout": 0.0, "dropout": 0.0,
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
    }


def clip_l_config() -> dict:
    """config.json of CLIP ViT-L/14 (the text tower SD 1.x uses), for the hub cache."""
    text = _text_config(768, 3072, 12, 12, 768)
    vision = {"model_type": "clip_vision_model", "hidden_size": 1024, "intermediate_size": 4096,
              "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 224, "patch_size": 14,
              "projection_dim": 768, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 768,
            "logit_scale_init_value": 2.6592, "initializer_factor": 1.0,
            "text_config": text, "vision_config": vision}


def _write_files(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def build_hf_cache(hf_home: Path) -> Path:
    """Put the CLIP-L tokenizer and config into an HF hub cache under ``hf_home/hub``."""
    files = clip_tokenizer_files()
    files["config.json"] = json.dumps(clip_l_config(), indent=2)
    digest = hashlib.sha1("".join(files[k] for k in sorted(files)).encode("utf-8")).hexdigest()
    repo = hf_home / "hub" / ("models--" + CLIP_L_REPO.replace("/", "--"))
    snapshot = repo / "snapshots" / digest
    _write_files(snapshot, files)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(digest, encoding="utf-8")
    # Marks the cache layout as current: transformers 4.x otherwise prints a one-time
    # "Migrating your old cache" notice.
    version = hf_home / "hub" / "version.txt"
    if not version.exists():
        version.write_text("1", encoding="utf-8")
    return snapshot


def build_tiny_text_encoder_dir(folder: Path) -> Path:
    """Tokenizer files + a tiny CLIPTextConfig: the ``version`` folder the tiny yamls name."""
    files = clip_tokenizer_files()
    files["config.json"] = json.dumps(_text_config(**TINY_TEXT), indent=2)
    _write_files(folder, files)
    return folder


# --------------------------------------------------------------------------- yaml configs

def sd1_config(text_dir: Path) -> dict:
    """A shrunk v1-inference.yaml."""
    return {"model": {
        "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
        "params": {
            "linear_start": 0.00085, "linear_end": 0.0120, "num_timesteps_cond": 1, "log_every_t": 200,
            "timesteps": 1000, "first_stage_key": "jpg", "cond_stage_key": "txt", "image_size": 64,
            "channels": 4, "cond_stage_trainable": False, "conditioning_key": "crossattn",
            "monitor": "val/loss_simple_ema", "scale_factor": 0.18215, "use_ema": False,
            "unet_config": {
                "target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
                "params": {
                    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32,
                    "attention_resolutions": [1], "num_res_blocks": 2, "channel_mult": [1, 2],
                    "num_heads": 8, "use_spatial_transformer": True, "transformer_depth": 1,
                    "context_dim": TINY_TEXT["hidden_size"], "use_checkpoint": False, "legacy": False,
                },
            },
            "first_stage_config": {
                "target": "ldm.models.autoencoder.AutoencoderKL",
                "params": {"embed_dim": 4, "monitor": "val/rec_loss", "ddconfig": dict(TINY_VAE_DDCONFIG),
                           "lossconfig": {"target": "torch.nn.Identity"}},
            },
            "cond_stage_config": {
                "target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
                "params": {"version": str(text_dir)},
            },
        },
    }}


def sdxl_config(text_dir: Path) -> dict:
    """A shrunk sd_xl_base.yaml."""
    size_embedder = {"target": "sgm.modules.encoders.modules.ConcatTimestepEmbedderND", "params": {"outdim": 256}}
    clip_l_width = TINY_TEXT["hidden_size"]
    return {"model": {
        "target": "sgm.models.diffusion.DiffusionEngine",
        "params": {
            "scale_factor": 0.13025, "disable_first_stage_autocast": True,
            "denoiser_config": {
                "target": "sgm.modules.diffusionmodules.denoiser.DiscreteDenoiser",
                "params": {
                    "num_idx": 1000,
                    "weighting_config": {"target": "sgm.modules.diffusionmodules.denoiser_weighting.EpsWeighting"},
                    "scaling_config": {"target": "sgm.modules.diffusionmodules.denoiser_scaling.EpsScaling"},
                    "discretization_config": {"target": "sgm.modules.diffusionmodules.discretizer.LegacyDDPMDiscretization"},
                },
            },
            "network_config": {
                "target": "sgm.modules.diffusionmodules.openaimodel.UNetModel",
                "params": {
                    # pooled open_clip output + 3 size embeddings of 2 x 256
                    "adm_in_channels": OPENCLIP_WIDTH + 6 * 256, "num_classes": "sequential",
                    "use_checkpoint": False, "in_channels": 4, "out_channels": 4, "model_channels": 32,
                    "attention_resolutions": [4, 2], "num_res_blocks": 2, "channel_mult": [1, 2, 2],
                    "num_head_channels": 16, "use_spatial_transformer": True, "use_linear_in_transformer": True,
                    "transformer_depth": [1, 1, 1], "context_dim": clip_l_width + OPENCLIP_WIDTH,
                    "spatial_transformer_attn_type": "softmax", "legacy": False,
                },
            },
            "conditioner_config": {
                "target": "sgm.modules.GeneralConditioner",
                "params": {"emb_models": [
                    {"is_trainable": False, "input_key": "txt",
                     "target": "sgm.modules.encoders.modules.FrozenCLIPEmbedder",
                     # "hidden" output of the first of the 2 layers (SDXL: layer 11 of 12)
                     "params": {"layer": "hidden", "layer_idx": TINY_TEXT["num_hidden_layers"] - 1,
                                "version": str(text_dir)}},
                    {"is_trainable": False, "input_key": "txt",
                     "target": "sgm.modules.encoders.modules.FrozenOpenCLIPEmbedder2",
                     # version None: open_clip never looks for pretrained weights
                     "params": {"arch": OPENCLIP_ARCH, "version": None, "freeze": True, "layer": "penultimate",
                                "always_return_pooled": True, "legacy": False}},
                    dict(size_embedder, input_key="original_size_as_tuple", is_trainable=False),
                    dict(size_embedder, input_key="crop_coords_top_left", is_trainable=False),
                    dict(size_embedder, input_key="target_size_as_tuple", is_trainable=False),
                ]},
            },
            "first_stage_config": {
                "target": "sgm.models.autoencoder.AutoencoderKLInferenceWrapper",
                "params": {"embed_dim": 4, "monitor": "val/rec_loss",
                           "ddconfig": dict(TINY_VAE_DDCONFIG, attn_type="vanilla"),
                           "lossconfig": {"target": "torch.nn.Identity"}},
            },
        },
    }}


# --------------------------------------------------------------------------- models

def _randomize(model, generator) -> None:
    """Re-draw every weight (ldm/sgm zero some output layers) and give norms non-zero biases."""
    import torch

    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm)
    for module in model.modules():
        if isinstance(module, norm_types):
            if module.weight is not None:
                module.weight.data = 1.0 + 0.1 * torch.randn(module.weight.shape, generator=generator)
            if module.bias is not None:
                module.bias.data = 0.1 * torch.randn(module.bias.shape, generator=generator)
        elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv1d)):
            fan_in = module.weight[0].numel()
            bound = fan_in ** -0.5
            module.weight.data = (torch.rand(module.weight.shape, generator=generator) * 2 - 1) * bound
            if module.bias is not None:
                module.bias.data = (torch.rand(module.bias.shape, generator=generator) * 2 - 1) * bound
        elif isinstance(module, torch.nn.Embedding):
            module.weight.data = 0.02 * torch.randn(module.weight.shape, generator=generator)
    # Bare parameters (open_clip's positional embedding, text projection, ...).
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all() or param.abs().max() > 1e3:
            param.data = 0.02 * torch.randn(param.shape, generator=generator)


class _TextEncoderFromConfig:
    """While active, CLIPTextModel.from_pretrained(folder) builds from the folder's config.json
    alone (random weights): the tiny text encoder folder holds no weights."""

    def __enter__(self):
        from transformers import CLIPTextConfig, CLIPTextModel
        self.original = CLIPTextModel.__dict__.get("from_pretrained")  # usually inherited

        def from_config(cls, name, *args, **kwargs):
            return cls(CLIPTextConfig.from_pretrained(name))

        CLIPTextModel.from_pretrained = classmethod(from_config)
        self.cls = CLIPTextModel
        return self

    def __exit__(self, *exc):
        if self.original is None:
            del self.cls.from_pretrained
        else:
            self.cls.from_pretrained = self.original


def _instantiate(config: dict):
    """Build a model from a config dict the same way ldm/sgm do (target + params)."""
    import importlib

    from omegaconf import OmegaConf

    node = OmegaConf.create(config)  # the WebUI hands ldm/sgm OmegaConf nodes, not dicts
    module, name = node.target.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**node.get("params", {}))


def _save_checkpoint(model, path: Path, config: dict) -> None:
    import torch
    import yaml
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
             for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    path.with_suffix(".yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def _add_repository(webui: Path, name: str) -> None:
    folder = webui / "repositories" / name
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: the WebUI's repositories/ must be present")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def build_sd1(webui: Path, text_dir: Path, seed: int) -> Path:
    import torch

    _add_repository(webui, "stable-diffusion-stability-ai")
    config = sd1_config(text_dir)
    torch.manual_seed(seed)  # whatever the constructors draw from the global generator
    with _TextEncoderFromConfig():
        model = _instantiate(config["model"])
    _randomize(model, torch.Generator().manual_seed(seed))
    path = webui / "models" / "Stable-diffusion" / "tiny-sd1.safetensors"
    _save_checkpoint(model, path, config)
    return path


def build_sdxl(webui: Path, text_dir: Path, seed: int) -> Path:
    import torch

    _add_repository(webui, "generative-models")
    config = sdxl_config(text_dir)
    torch.manual_seed(seed + 1)  # open_clip draws some parameters (MHA in_proj, positional
    with _TextEncoderFromConfig():  # embedding, text projection) that _randomize keeps
        model = _instantiate(config["model"])
    # The WebUI never uses open_clip's image tower (sgm deletes it too); no loss/sampler either.
    _randomize(model, torch.Generator().manual_seed(seed + 1))
    path = webui / "models" / "Stable-diffusion" / "tiny-sdxl.safetensors"
    _save_checkpoint(model, path, config)
    return path


def build_vae_approx(path: Path, seed: int, latent_channels: int = 4) -> Path:
    """Random weights for the WebUI's VAEApprox live-preview net: 8 convolutions
    latent->8->16->32->64->32->16->8->3 with kernels 7, 5, then 3."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    widths = [latent_channels, 8, 16, 32, 64, 32, 16, 8, 3]
    kernels = [7, 5, 3, 3, 3, 3, 3, 3]
    state = {}
    for i, kernel in enumerate(kernels):
        fan_in = widths[i] * kernel * kernel
        state[f"conv{i + 1}.weight"] = torch.randn(widths[i + 1], widths[i], kernel, kernel, generator=generator) * fan_in ** -0.5
        state[f"conv{i + 1}.bias"] = torch.zeros(widths[i + 1])
    path.parent.mkdir(parents=True, exist_ok=True)
    # Legacy (non-zip) format: the WebUI's restricted unpickler rejects the newer archive layout.
    torch.save(state, str(path), _use_new_zipfile_serialization=False)
    return path


def main(webui_dir, hf_home=None, sdxl: bool = True, seed: int = 0) -> dict[str, Path]:
    """Build everything for the WebUI checkout at ``webui_dir``; returns the written paths."""
    webui = Path(webui_dir).resolve()
    written: dict[str, Path] = {}
    started = time.perf_counter()
    if hf_home:
        written["hf_tokenizer"] = build_hf_cache(Path(hf_home).resolve())
    text_dir = build_tiny_text_encoder_dir(webui / "models" / "tiny-clip-text-encoder")
    written["tiny_text_encoder"] = text_dir
    written["sd1"] = build_sd1(webui, text_dir, seed)
    if sdxl:
        written["sdxl"] = build_sdxl(webui, text_dir, seed)
        approx = webui / "models" / "VAE-approx" / "vaeapprox-sdxl.pt"
        if not approx.exists():
            written["vae_approx_sdxl"] = build_vae_approx(approx, seed)
    for key, path in written.items():
        print(f"{key}: {path}")
    print(f"tiny WebUI models built in {time.perf_counter() - started:.1f} s")
    return written


def webui_arguments(description: str, add=None, argv=None) -> argparse.Namespace:
    """The command line of the builders: the WebUI checkout (argument, --webui-dir or
    $WEBUI_DIR), --seed, and what `add(parser)` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("webui_dir", nargs="?", default=os.environ.get("WEBUI_DIR"),
                        help="the WebUI checkout (default: $WEBUI_DIR)")
    parser.add_argument("--webui-dir", dest="webui_dir_opt", help="same as the positional argument")
    parser.add_argument("--seed", type=int, default=0)
    if add is not None:
        add(parser)
    args = parser.parse_args(argv)
    args.webui_dir = args.webui_dir_opt or args.webui_dir
    if not args.webui_dir:
        parser.error("give the WebUI directory (argument, --webui-dir or $WEBUI_DIR)")
    return args


def _parse(argv=None):
    def add(parser):
        parser.add_argument("--hf-home", default=None,
                            help="also put the CLIP-L tokenizer into this HF_HOME's hub cache")
        parser.add_argument("--no-sdxl", action="store_true", help="build only the SD 1.x model")

    return webui_arguments(__doc__.split("\n\n")[0], add, argv)


if __name__ == "__main__":
    arguments = _parse()
    main(arguments.webui_dir, hf_home=arguments.hf_home, sdxl=not arguments.no_sdxl, seed=arguments.seed)
