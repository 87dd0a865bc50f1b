#!/usr/bin/env python3
"""Build a tiny random SD 1.5 checkpoint (and a matching LoRA) that a real Stable Diffusion
WebUI Forge (Forge 2, commit dfdcbab6) accepts and runs offline on CPU; the same files for Forge
Classic (Haoming02/sd-webui-forge-classic, branch ``classic``, 1f95d717).

Run it with Forge's own venv (it imports Forge's ``backend`` and ``repositories/huggingface_guess``
to build exactly the modules Forge builds, and checks Forge's detection on the result; on a
Classic checkout, recognised by ``modules_forge/forge_version.py`` saying ``version = "classic"``,
it imports Classic's ``ldm_patched`` (its ComfyUI copy) instead: see ``ClassicHost``.  Both draw
every tensor in the same order (``canonical_named_modules``), so for the same recipe both write
byte-identical files, and each checks its own Forge's detection on them):

    <forge>/venv/bin/python tiny_forge_models.py [--forge-dir] <forge> [--seed 0] [--fp16] [--no-lora]
        [--no-taesd] [--controlnet | --no-controlnet] [--force]
    (importable: tiny_forge_models.main(forge_dir, seed=0, fp16=False, force=False, lora=True, taesd=True,
     controlnet=True) -> {"checkpoint": Path, "lora": Path, "taesd_decoder": Path, "taesd_encoder": Path,
     "controlnet": Path})

What it writes (random weights, fixed seed: the files are byte-identical on every run; a rerun
with the same recipe only reads the existing headers and returns at once):

* ``<forge>/models/Stable-diffusion/tiny-sd15.safetensors`` (~280 MB): an SD 1.5 single-file
  checkpoint (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``).
* ``<forge>/models/Lora/tiny-sd15-lora.safetensors``: a kohya-format LoRA (rank 4, alpha 2) for it.
* ``<forge>/models/VAE-taesd/taesd_{de,en}coder.pth`` (unless ``--no-taesd``): random TAESD nets,
  so that the "TAESD" VAE/live-preview settings work offline (Forge would download them).  The
  full SD 1.5 VAE is most of the CPU time at 128-256 px (decode at 256 px: ~7 s on one core);
  with ``"sd_vae_decode_method": "TAESD"`` (and ``sd_vae_encode_method``) a 256 px, 4-step
  txt2img takes ~3 s instead of ~9 s.
* ``<forge>/models/ControlNet/tiny-sd15-controlnet.safetensors`` (unless ``--no-controlnet``; ~37 MB):
  a ControlNet for the tiny UNet in the lllyasviel/A1111 layout (``control_model.*``), listed by
  Forge's built-in ControlNet as ``tiny-sd15-controlnet [hash]`` (Forge Classic lists it, and wants
  it named, without the hash: ``tiny-sd15-controlnet``).  See "The ControlNet" below.

Why these shapes (Forge does not read a yaml for the architecture):

* Forge finds the model type with huggingface_guess: it *detects* the UNet config from the state
  dict's keys and shapes (``detect_unet_config``) and takes the first class of ``model_list`` whose
  ``unet_config`` matches.  ``SD15`` needs ``model_channels`` 320, ``context_dim`` 768 (the width
  of ``attn2.to_k`` in the first transformer), ``use_linear_in_transformer`` False (4-d ``proj_in``),
  no ``label_emb``, no temporal layers.  Depth, levels and channel multipliers are free: Forge
  builds the UNet from the *detected* config (``num_heads`` 8 comes from the SD15 class).  So the
  UNet here has SD 1.5's width but only two levels (channel_mult [1, 1]), one res block per
  level, a transformer in level 1 and in the middle block (none at full resolution): 36.7 M
  parameters instead of 860 M, stored as fp16.  The builder checks that the config Forge
  detects rebuilds exactly this key/shape set.
* The VAE and the text encoder are *not* detected: Forge builds them from its own configs,
  ``backend/huggingface/runwayml/stable-diffusion-v1-5/{vae,text_encoder}/config.json`` (the full
  SD 1.5 VAE, 83.7 M parameters, and the full CLIP ViT-L/14 text model, 123 M), loads the
  checkpoint's tensors non-strictly, and a missing ``Linear`` weight stays ``None`` in Forge's
  operations (a crash at the first forward), other missing tensors stay uninitialised memory.
  They must therefore be complete and full-size.  To keep the file small they are stored as
  float8_e4m3fn by default (Forge copies them into its fp32/fp16 modules on load; only the UNet's
  dtype is "detected" from the file, and the UNet is stored as fp16): ~280 MB.  ``--fp16`` stores
  them as fp16 (~490 MB).
* The tokenizer is Forge's own (``backend/huggingface/.../tokenizer``): no HF cache is needed
  for the model.

Random weights are drawn everywhere (uniform +-1/sqrt(fan_in) for linear/conv layers, N(0, 0.02)
for embeddings), every norm gets weight 1 + N(0, 0.1) and bias N(0, 0.1) (all-zero LayerNorm
biases make the text encoder's output mean zero, and the "original" prompt-emphasis rescaling
then divides 0 by 0).

The LoRA uses the key names of real kohya SD 1.5 LoRAs (diffusers block names):
``lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q`` (-> input_blocks.3.1),
``lora_unet_mid_block_attentions_0_...`` (-> middle_block.1), ``lora_unet_up_blocks_0_attentions_{0,1}_...``
(-> output_blocks.{0,1}.1), ``lora_te_text_model_encoder_layers_{0..11}_...``;
every key is checked against Forge's own mapping (huggingface_guess ``unet_to_diffusers``) and
shape.  Its up weights are random (not zero), so applying it visibly changes the image.

The ControlNet: Forge's loader (``modules_forge/supported_controlnet.py``) takes a file with
``control_model.zero_convs.0.0.weight`` as an lllyasviel ``.pth``-style ControlNet, *detects* its
config from the state dict with huggingface_guess (``model_config_from_unet(sd, "control_model.",
True)``: the same detection as the UNet's, on ``control_model.input_blocks.*``/``middle_block.*``),
reads ``hint_channels`` from ``input_hint_block.0.weight`` and builds ``backend/nn/cnets/cldm.py``'s
``ControlNet``, loading non-strictly.  So the file is that class built with the tiny UNet's config
(2 levels, 320 channels, context 768, transformers in level 1 and the middle) and 3 hint channels:
its 4 zero-conv outputs and ``middle_block_out`` line up with the UNet's 4 skip connections and
middle block.  The builder checks the detected config rebuilds exactly its keys/shapes.  Weights
are random (seed + 3) and fp16; unlike a freshly initialised ControlNet the zero convs are NOT zero
(uniform, gain ``CONTROLNET_ZERO_CONV_GAIN`` over the default bound), and each conv of the hint
block is rescaled so that its output on a fixed reference image has std 1 (the last one
``CONTROLNET_HINT_STD``), so the hint image is not lost in its 8 convolutions: a unit at weight
1-2 visibly changes a 64x64 4-step image, and a different image gives a different result.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import time
from pathlib import Path

BUILDER_VERSION = 2
CHECKPOINT_NAME = "tiny-sd15.safetensors"
LORA_NAME = "tiny-sd15-lora.safetensors"
CONTROLNET_NAME = "tiny-sd15-controlnet.safetensors"
SD15_REPO = "runwayml/stable-diffusion-v1-5"

# The UNet: SD 1.5's widths (what huggingface_guess' SD15 class requires), two levels deep.
UNET_CONFIG = dict(
    in_channels=4, out_channels=4, model_channels=320, context_dim=768,
    channel_mult=[1, 1], num_res_blocks=[1, 1],
    # no transformer at full resolution (the costly part on a CPU: 0.6 s instead of 1.3 s per step
    # at 256 px), one in level 1, one in the middle block
    transformer_depth=[0, 1], transformer_depth_output=[0, 0, 1, 1], transformer_depth_middle=1,
    use_linear_in_transformer=False, use_spatial_transformer=True,
    num_heads=8, num_head_channels=-1, adm_in_channels=None,
)
LORA_RANK, LORA_ALPHA = 4, 2.0
# Modules the LoRA patches (as kohya's default SD 1.5 LoRA: transformer attention/ff + proj).
LORA_UNET_SUFFIXES = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                      "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
                      "ff.net.0.proj", "ff.net.2")
LORA_TE_MODULES = {"self_attn.q_proj": "self_attn_q_proj", "self_attn.k_proj": "self_attn_k_proj",
                   "self_attn.v_proj": "self_attn_v_proj", "self_attn.out_proj": "self_attn_out_proj",
                   "mlp.fc1": "mlp_fc1", "mlp.fc2": "mlp_fc2"}

# The ControlNet: 3 hint channels (an RGB control image); its zero convs get the default random
# bound times this gain (not zero), so the control visibly changes the image (measured on Forge,
# 64x64, 4 steps, Euler a: mean |guided - unguided| 12/255 at weight 1, 13/255 at weight 2; a
# different control image 9/255; gain 1 gave 9 and 11).
CONTROLNET_HINT_CHANNELS = 3
CONTROLNET_ZERO_CONV_GAIN = 3.0
CONTROLNET_HINT_STD = 1.0  # std of the hint block's output on the builder's reference image

_ST_DTYPES = {}  # torch dtype -> safetensors dtype name (filled once torch is imported)


def log(msg: str) -> None:
    print(f"[tiny_forge_models] {msg}", flush=True)


# --------------------------------------------------------------------------- safetensors I/O
def read_safetensors_metadata(path: Path) -> dict | None:
    """The ``__metadata__`` of a safetensors file (None when unreadable)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 * 1024 * 1024:
                return None
            header = json.loads(f.read(length))
        return header.get("__metadata__", {})
    except (OSError, ValueError, struct.error):
        return None


def write_safetensors(path: Path, tensors: dict, metadata: dict[str, str]) -> None:
    """A plain safetensors writer with a sorted, deterministic header (safetensors 0.4.2 writes
    its metadata from a hash map, in random order).  Written to a temp file, then renamed."""
    import torch

    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.view(torch.uint8) if t.dtype.itemsize == 1 and t.dtype != torch.uint8 else t
        data = raw.numpy().tobytes() if raw.dtype != torch.bfloat16 else raw.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- Forge imports
def forge_flavor(forge_dir: Path) -> str:
    """``"classic"`` for Forge Classic (Haoming02/sd-webui-forge-classic, branch ``classic``: its
    ``modules_forge/forge_version.py`` says ``version = "classic"``; the old Forge 1 code on
    ``ldm_patched``), ``"forge2"`` for Forge 2 (``backend/loader.py``)."""
    version_file = forge_dir / "modules_forge" / "forge_version.py"
    try:
        version_text = version_file.read_text(encoding="utf-8")
    except OSError:
        version_text = ""
    if "classic" in version_text and (forge_dir / "ldm_patched").is_dir():
        return "classic"
    if (forge_dir / "backend" / "loader.py").is_file():
        return "forge2"
    # reForge (Panchovix/stable-diffusion-webui-reForge, main, 3b56b268): modules_forge/ and
    # ldm_patched/ as Classic, a version that is neither "classic" nor "neo" ('1.0.0v2-v1.10.1RC').
    if version_text and "neo" not in version_text and (forge_dir / "ldm_patched").is_dir():
        return "reforge"
    raise SystemExit(f"{forge_dir} is neither a Forge 2 checkout (backend/loader.py), a Forge Classic one "
                     "(modules_forge/forge_version.py with version = \"classic\", ldm_patched/) nor a reForge one "
                     "(modules_forge/forge_version.py, ldm_patched/)")


def _quiet_import(argv_extra, importer):
    """Run ``importer()`` with a CPU command line in sys.argv (both Forges parse it at import
    time) and their import-time prints ("Set vram state to: ..." etc.) swallowed."""
    import contextlib
    import io
    saved_argv = sys.argv
    sys.argv = [saved_argv[0], "--always-cpu", "--all-in-fp32", *argv_extra]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importer()
    finally:
        sys.argv = saved_argv


def import_forge(forge_dir: Path):
    """Make Forge 2's ``backend`` and huggingface_guess importable (as its launcher does)."""
    for sub in ("repositories/huggingface_guess", "packages_3rdparty", "."):
        p = str(forge_dir / sub)
        if p not in sys.path:
            sys.path.insert(0, p)

    def importer():
        import backend.nn.unet as forge_unet
        import backend.nn.vae as forge_vae
        return forge_unet, forge_vae

    forge_unet, forge_vae = _quiet_import([], importer)
    import huggingface_guess
    return forge_unet, forge_vae, huggingface_guess


class Detected:
    """What a Forge's model detection said about a state dict: the class name and UNet config."""

    def __init__(self, name: str, unet_config: dict):
        self.name, self.unet_config = name, unet_config


class Forge2Host:
    """The modules Forge 2 (dfdcbab6) builds for an SD 1.5 single file, and its detection
    (``backend/loader.py``: huggingface_guess; ``modules_forge/supported_controlnet.py``)."""

    flavor = "forge2"
    detector = "huggingface_guess"

    def __init__(self, forge_dir: Path):
        self.forge_dir = forge_dir
        self.repo = forge_dir / "backend" / "huggingface" / SD15_REPO
        self.forge_unet, self.forge_vae, self.huggingface_guess = import_forge(forge_dir)

    def unet(self, config: dict):
        return self.forge_unet.IntegratedUNet2DConditionModel(**config)

    def vae(self):
        vae_config = self.forge_vae.IntegratedAutoencoderKL.load_config(str(self.repo / "vae"))
        return self.forge_vae.IntegratedAutoencoderKL.from_config(vae_config)

    def text_encoder(self):
        from transformers import CLIPTextConfig, CLIPTextModel
        return CLIPTextModel(CLIPTextConfig.from_pretrained(str(self.repo / "text_encoder")))

    def detect(self, meta: dict) -> Detected:
        guess = self.huggingface_guess.guess(meta)
        name = type(guess).__name__ if guess is not None else "nothing"
        if type(guess) is not self.huggingface_guess.model_list.SD15:
            raise SystemExit(f"huggingface_guess did not detect SD15 but {name}: {guess and guess.unet_config}")
        return Detected(name, dict(guess.unet_config))

    def rebuild_unet(self, unet_config: dict):
        import inspect
        accepted = inspect.signature(self.forge_unet.IntegratedUNet2DConditionModel.__init__).parameters
        return self.unet({k: v for k, v in unet_config.items() if k in accepted})  # what from_config passes

    def unet_to_diffusers(self, unet_config: dict) -> dict:
        return self.huggingface_guess.utils.unet_to_diffusers(unet_config)

    def controlnet(self, config: dict):
        import backend.nn.cnets.cldm as cldm
        return cldm.ControlNet(**config)

    def detect_controlnet(self, meta: dict, prefix: str) -> dict:
        from huggingface_guess.detection import model_config_from_unet
        return dict(model_config_from_unet(meta, prefix, True).unet_config)


class ClassicHost:
    """The modules Forge Classic builds for an SD 1.5 single file, and its detection.  Classic
    (``modules_forge/forge_loader.py``) instantiates A1111's yaml config (``v1-inference.yaml`` for
    SD 1.5, with the UNet/VAE/CLIP replaced by stand-ins), then builds the real parts with its
    ComfyUI copy ``ldm_patched``: ``model_detection.model_config_from_unet`` *detects* the UNet
    config (same rules as huggingface_guess: SD15 needs model_channels 320, context_dim 768,
    use_linear_in_transformer False, ...), the VAE is the fixed SD 1.x ``ddconfig`` of
    ``ldm_patched/modules/sd.py`` and the text encoder transformers' CLIPTextModel from
    ``ldm_patched/modules/sd1_clip_config.json`` (both loaded non-strictly, as in Forge 2).
    The ControlNet loader (``modules_forge/supported_controlnet.py``) detects like Forge 2's."""

    flavor = "classic"
    detector = "ldm_patched model_detection"
    # ldm_patched/modules/sd.py, class VAE: "default SD1.x/SD2.x VAE parameters"
    VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
                    "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
                    "dropout": 0.0}

    def __init__(self, forge_dir: Path):
        self.forge_dir = forge_dir
        if str(forge_dir) not in sys.path:
            sys.path.insert(0, str(forge_dir))

        def importer():
            import torch
            from ldm_patched.modules import args_parser
            # what modules_forge/initialization.py does before anything touches the device
            args_parser.args, _ = args_parser.parser.parse_known_args()
            import ldm_patched.controlnet.cldm as cldm
            import ldm_patched.ldm.models.autoencoder as autoencoder
            import ldm_patched.ldm.modules.diffusionmodules.openaimodel as openaimodel
            import ldm_patched.modules.model_detection as model_detection
            import ldm_patched.modules.utils as utils
            return torch, cldm, autoencoder, openaimodel, model_detection, utils

        (self.torch, self.cldm, self.autoencoder, self.openaimodel, self.model_detection,
         self.utils) = _quiet_import([], importer)

    def unet(self, config: dict):
        return self.openaimodel.UNetModel(**{"image_size": 32, **config})  # image_size is unused

    def vae(self):
        return self.autoencoder.AutoencoderKL(ddconfig=dict(self.VAE_DDCONFIG), embed_dim=4)

    def text_encoder(self):
        from transformers import CLIPTextConfig, CLIPTextModel
        config = self.forge_dir / "ldm_patched" / "modules" / "sd1_clip_config.json"
        return CLIPTextModel(CLIPTextConfig.from_json_file(str(config)))

    def detect(self, meta: dict) -> Detected:
        config = self.model_detection.model_config_from_unet(meta, "model.diffusion_model.", self.torch.float32)
        name = type(config).__name__ if config is not None else "nothing"
        if name != "SD15":
            raise SystemExit(f"ldm_patched's model_detection did not detect SD15 but {name}: "
                             f"{config and config.unet_config}")
        return Detected(name, dict(config.unet_config))

    def rebuild_unet(self, unet_config: dict):
        return self.openaimodel.UNetModel(**unet_config)  # what supported_models_base.get_model passes

    def unet_to_diffusers(self, unet_config: dict) -> dict:
        return self.utils.unet_to_diffusers(unet_config)

    def controlnet(self, config: dict):
        return self.cldm.ControlNet(**{"image_size": 32, **config})  # image_size is unused

    def detect_controlnet(self, meta: dict, prefix: str) -> dict:
        return dict(self.model_detection.model_config_from_unet(meta, prefix, self.torch.float32, True).unet_config)


class ReForgeHost(ClassicHost):
    """reForge (Panchovix/stable-diffusion-webui-reForge, main, 3b56b268): Classic's way of loading
    (``modules_forge/forge_loader.py`` + ``ldm_patched``), on a newer ComfyUI copy whose
    ``model_detection.model_config_from_unet(state_dict, prefix, use_base_if_no_match, metadata)``
    takes no dtype.  The same modules, so the same bytes as Forge 2/Classic."""

    flavor = "reforge"

    def detect(self, meta: dict) -> Detected:
        config = self.model_detection.model_config_from_unet(meta, "model.diffusion_model.")
        name = type(config).__name__ if config is not None else "nothing"
        if name != "SD15":
            raise SystemExit(f"ldm_patched's model_detection did not detect SD15 but {name}: "
                             f"{config and config.unet_config}")
        return Detected(name, dict(config.unet_config))

    def detect_controlnet(self, meta: dict, prefix: str) -> dict:
        return dict(self.model_detection.model_config_from_unet(meta, prefix, True).unet_config)


def forge_host(forge_dir: Path):
    flavor = forge_flavor(forge_dir)
    return {"classic": ClassicHost, "reforge": ReForgeHost}.get(flavor, Forge2Host)(forge_dir)


def vae_approx_state_dict(seed: int) -> dict:
    """Random "Approx NN" live-preview net (A1111's modules/sd_vae_approx.py VAEApprox) for
    models/VAE-approx/model.pt.  reForge ships only vaeapprox-sdxl.pt and downloads model.pt from
    GitHub at the first SD 1.5 job (live previews are on by default): offline that is HTTP 500."""
    import torch
    from torch import nn
    widths = [4, 8, 16, 32, 64, 32, 16, 8, 3]
    kernels = [7, 5, 3, 3, 3, 3, 3, 3]
    with torch.device("meta"):
        net = nn.Module()
        for i, k in enumerate(kernels):
            setattr(net, f"conv{i + 1}", nn.Conv2d(widths[i], widths[i + 1], (k, k)))
    return Drawer(seed + 3).state_dict(net, "", torch.float32)


# --------------------------------------------------------------------------- random weights
# The order in which a transformer block's parts are drawn: Forge 2's BasicTransformerBlock
# registers them in this order; ldm_patched's (Forge Classic) registers attn1, ff, attn2, norm1-3.
# Drawing in one fixed order gives both Forges the same bytes for the same recipe.
TRANSFORMER_BLOCK_ORDER = ("attn1", "norm1", "attn2", "norm2", "ff", "norm3")


def canonical_named_modules(model, prefix: str = ""):
    """``model.named_modules()`` (pre-order, each module once), except that the children of a
    transformer block (one with all of TRANSFORMER_BLOCK_ORDER) come in that order, then any
    others in their own order."""
    seen = set()

    def walk(module, name):
        if id(module) in seen:
            return
        seen.add(id(module))
        yield name, module
        children = dict(module.named_children())
        if all(k in children for k in TRANSFORMER_BLOCK_ORDER):
            order = list(TRANSFORMER_BLOCK_ORDER) + [k for k in children if k not in TRANSFORMER_BLOCK_ORDER]
        else:
            order = list(children)
        for child_name in order:
            child = children[child_name]
            if child is not None:
                yield from walk(child, f"{name}.{child_name}" if name else child_name)

    yield from walk(model, prefix)


class Drawer:
    """Draws every parameter of a (meta-device) module tree from one seeded generator."""

    def __init__(self, seed: int):
        import torch
        self.torch = torch
        self.gen = torch.Generator().manual_seed(seed)

    def uniform(self, shape, bound):
        t = self.torch
        return (t.rand(shape, generator=self.gen) * 2 - 1) * bound

    def normal(self, shape, std, mean=0.0):
        return self.torch.randn(shape, generator=self.gen) * std + mean

    def state_dict(self, model, prefix: str, dtype) -> dict:
        """Random tensors for every parameter of ``model`` (a module built on the meta device)."""
        nn = self.torch.nn
        out = {}
        for mod_name, module in canonical_named_modules(model):
            for p_name, param in module.named_parameters(recurse=False):
                shape = tuple(param.shape)
                if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                    value = self.normal(shape, 0.1, 1.0 if p_name == "weight" else 0.0)
                elif isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv1d)):
                    fan_in = 1
                    for d in module.weight.shape[1:]:
                        fan_in *= d
                    value = self.uniform(shape, fan_in ** -0.5)
                else:  # embeddings and bare parameters
                    value = self.normal(shape, 0.02)
                key = prefix + (f"{mod_name}." if mod_name else "") + p_name
                out[key] = value.to(dtype)
        return out


# --------------------------------------------------------------------------- builders
def build_checkpoint_tensors(host, seed: int, te_vae_dtype):
    import torch

    drawer = Drawer(seed)
    tensors: dict = {}
    with torch.device("meta"):
        unet = host.unet(UNET_CONFIG)
        vae = host.vae()
        text_encoder = host.text_encoder()
    tensors.update(drawer.state_dict(unet, "model.diffusion_model.", torch.float16))
    tensors.update(drawer.state_dict(vae, "first_stage_model.", te_vae_dtype))
    tensors.update(drawer.state_dict(text_encoder, "cond_stage_model.transformer.", te_vae_dtype))
    return tensors


def check_detection(tensors: dict, host) -> Detected:
    """Run Forge's detection on the key/shape set: it must say SD 1.5."""
    import torch
    meta = {k: torch.empty(v.shape, device="meta") for k, v in tensors.items()}
    return host.detect(meta)


def check_rebuild(tensors: dict, guess: Detected, host) -> None:
    """Forge builds the UNet from the detected config: it must have exactly our keys and shapes."""
    import torch
    with torch.device("meta"):
        rebuilt = host.rebuild_unet(guess.unet_config)
    want = {k[len("model.diffusion_model."):]: tuple(v.shape) for k, v in tensors.items()
            if k.startswith("model.diffusion_model.")}
    same_layout(want, rebuilt, "UNet")


def same_layout(want: dict, rebuilt, what: str) -> None:
    """Stop when the module Forge would build from the file has other keys or shapes."""
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        missing, extra = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        shapes = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise SystemExit(f"the {what} Forge would build differs: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}, shapes {shapes[:5]}")


def taesd_state_dicts(seed: int) -> dict:
    """Random TAESD encoder/decoder (the architecture of Forge's modules/sd_vae_taesd.py)."""
    import torch
    from torch import nn

    def conv(n_in, n_out, **kwargs):
        return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)

    class Block(nn.Module):
        def __init__(self, n_in, n_out):
            super().__init__()
            self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
            self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
            self.fuse = nn.ReLU()

    with torch.device("meta"):
        decoder = nn.Sequential(
            nn.Identity(), conv(4, 64), nn.ReLU(),
            Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
            Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
            Block(64, 64), Block(64, 64), Block(64, 64), nn.Upsample(scale_factor=2), conv(64, 64, bias=False),
            Block(64, 64), conv(64, 3),
        )
        encoder = nn.Sequential(
            conv(3, 64), Block(64, 64),
            conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
            conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
            conv(64, 64, stride=2, bias=False), Block(64, 64), Block(64, 64), Block(64, 64),
            conv(64, 4),
        )
    drawer = Drawer(seed + 2)
    return {"taesd_decoder.pth": drawer.state_dict(decoder, "", torch.float32),
            "taesd_encoder.pth": drawer.state_dict(encoder, "", torch.float32)}


def save_torch_deterministic(path: Path, state_dict: dict) -> None:
    """torch.save of a plain state dict (what Forge's torch.load(weights_only) reads), via a temp file."""
    import torch
    tmp = path.with_name(path.name + ".part")
    torch.save(dict(sorted(state_dict.items())), tmp)
    os.replace(tmp, path)


def build_lora_tensors(ckpt_tensors: dict, guess: Detected, seed: int, host) -> dict:
    """A kohya LoRA (diffusers block names) for every transformer of the tiny UNet and every
    layer of the text encoder, checked against Forge's own key mapping and the shapes."""
    import torch

    diffusers_to_ldm = host.unet_to_diffusers(guess.unet_config)
    ldm_to_diffusers = {v: k for k, v in diffusers_to_ldm.items()}
    targets = []  # (lora name, weight key in the checkpoint)
    for ldm_key in sorted(ldm_to_diffusers):
        if not ldm_key.endswith(".weight"):
            continue
        module = ldm_key[: -len(".weight")]
        if ".transformer_blocks." in module and module.endswith(LORA_UNET_SUFFIXES) or module.endswith((".proj_in", ".proj_out")):
            name = "lora_unet_" + ldm_to_diffusers[ldm_key][: -len(".weight")].replace(".", "_")
            targets.append((name, "model.diffusion_model." + ldm_key))
    n_layers = 1 + max(int(k.split(".")[5]) for k in ckpt_tensors
                       if k.startswith("cond_stage_model.transformer.text_model.encoder.layers."))
    for layer in range(n_layers):
        for module, suffix in LORA_TE_MODULES.items():
            targets.append((f"lora_te_text_model_encoder_layers_{layer}_{suffix}",
                            f"cond_stage_model.transformer.text_model.encoder.layers.{layer}.{module}.weight"))

    drawer = Drawer(seed + 1)
    out = {}
    for name, weight_key in targets:
        if weight_key not in ckpt_tensors:
            raise SystemExit(f"LoRA target {weight_key} is not in the checkpoint")
        shape = tuple(ckpt_tensors[weight_key].shape)
        out_dim, in_dim = shape[0], shape[1]
        kernel = shape[2:]
        # delta W = alpha/rank * up @ down: entries ~ 0.5/sqrt(in), as large as the weights
        down = drawer.normal((LORA_RANK, in_dim) + kernel, in_dim ** -0.5)
        up = drawer.normal((out_dim, LORA_RANK) + tuple(1 for _ in kernel), LORA_RANK ** -0.5 / 2)
        out[f"{name}.lora_down.weight"] = down.to(torch.float16)
        out[f"{name}.lora_up.weight"] = up.to(torch.float16)
        out[f"{name}.alpha"] = torch.tensor(LORA_ALPHA, dtype=torch.float16)

    # Forge's mapping (comfyui_lora_collection.model_lora_keys_unet): lora_unet_<diffusers key>
    # -> diffusion_model.<unet_to_diffusers value>; check every UNet name maps to its target.
    for name, weight_key in targets:
        if name.startswith("lora_unet_"):
            diffusers_key = next(k for k, v in diffusers_to_ldm.items()
                                 if "model.diffusion_model." + v == weight_key)
            assert name == "lora_unet_" + diffusers_key[: -len(".weight")].replace(".", "_"), name
    return out, targets


def controlnet_config() -> dict:
    """The config Forge's loader gives ``cldm.ControlNet`` for our file: the UNet's, without
    ``out_channels``, with ``hint_channels`` from ``input_hint_block.0.weight``."""
    config = {k: v for k, v in UNET_CONFIG.items() if k != "out_channels"}
    config["hint_channels"] = CONTROLNET_HINT_CHANNELS
    return config


def build_controlnet_tensors(seed: int, host) -> dict:
    """A random ControlNet (lllyasviel layout, ``control_model.*``) matching the tiny UNet."""
    import torch

    prefix = "control_model."
    with torch.device("meta"):
        model = host.controlnet(controlnet_config())
    drawer = Drawer(seed + 3)
    tensors = drawer.state_dict(model, prefix, torch.float32)
    # The hint block: 8 convs with SiLU between them.  With the default +-1/sqrt(fan_in) weights and
    # biases of the same size the image shrinks to almost nothing (std ~0.01 at the end, under the
    # biases), and a fixed larger gain either still loses it or blows it up (SiLU is ~x/2 near 0,
    # ~x for large x).  So: uniform weights, small biases, then each conv rescaled in turn so that
    # its output on a fixed reference image (random 8x8-pixel colour blocks, 64x64) has std 1, the
    # last one CONTROLNET_HINT_STD (the first input block's output on a unit-variance latent has
    # std ~0.5): the hint then shapes the control signal instead of being noise on it.
    gen = torch.Generator().manual_seed(seed + 4)
    act = (torch.rand(1, CONTROLNET_HINT_CHANNELS, 8, 8, generator=gen) > 0.5).float()
    act = act.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    convs = [(name, module) for name, module in model.input_hint_block.named_modules()
             if isinstance(module, torch.nn.Conv2d)]
    for i, (name, module) in enumerate(convs):
        w_key, b_key = f"{prefix}input_hint_block.{name}.weight", f"{prefix}input_hint_block.{name}.bias"
        weight = drawer.uniform(module.weight.shape, (3 / module.weight[0].numel()) ** 0.5)  # std 1/sqrt(fan_in)
        bias = drawer.normal(module.bias.shape, 0.01)
        out = torch.nn.functional.conv2d(act, weight, None, module.stride, module.padding)
        target = CONTROLNET_HINT_STD if i == len(convs) - 1 else 1.0
        weight = weight * (target / float(out.std()))
        tensors[w_key], tensors[b_key] = weight, bias
        act = torch.nn.functional.conv2d(act, weight, bias, module.stride, module.padding)
        if i < len(convs) - 1:
            act = torch.nn.functional.silu(act)
    # Zero convs: random, not zero (a fresh ControlNet's zero convs would make it a no-op).
    zero_conv_keys = [k for k in tensors if k.startswith((prefix + "zero_convs.", prefix + "middle_block_out."))]
    for key in zero_conv_keys:
        tensors[key] = tensors[key] * CONTROLNET_ZERO_CONV_GAIN
    return {k: v.to(torch.float16) for k, v in tensors.items()}


def check_controlnet(tensors: dict, host) -> dict:
    """Run Forge's ControlNet config detection (supported_controlnet.py) on the file's keys and
    shapes: the ControlNet it builds must have exactly our keys and shapes."""
    import torch

    prefix = "control_model."
    if "control_model.zero_convs.0.0.weight" not in tensors:
        raise SystemExit("the ControlNet lacks control_model.zero_convs.0.0.weight (Forge's .pth-layout marker)")
    meta = {k: torch.empty(v.shape, device="meta") for k, v in tensors.items()}
    config = host.detect_controlnet(meta, prefix)
    config.pop("out_channels")
    config["hint_channels"] = meta[prefix + "input_hint_block.0.weight"].shape[1]
    with torch.device("meta"):
        rebuilt = host.controlnet(config)
    same_layout({k[len(prefix):]: tuple(v.shape) for k, v in tensors.items()}, rebuilt, "ControlNet")
    # Its outputs are added to the UNet's skip connections: the structure must be the UNet's.
    for key in ("model_channels", "channel_mult", "num_res_blocks", "transformer_depth", "context_dim"):
        got_value = list(config[key]) if isinstance(config[key], (list, tuple)) else config[key]
        if got_value != UNET_CONFIG[key]:
            raise SystemExit(f"the ControlNet's detected {key} {got_value} is not the UNet's {UNET_CONFIG[key]}")
    return config


def recipe(seed: int, te_vae_dtype_name: str) -> str:
    text = json.dumps({"builder": BUILDER_VERSION, "seed": seed, "te_vae_dtype": te_vae_dtype_name,
                       "unet": UNET_CONFIG, "lora": [LORA_RANK, LORA_ALPHA, LORA_UNET_SUFFIXES,
                                                     sorted(LORA_TE_MODULES)]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def controlnet_recipe(seed: int) -> str:
    """The ControlNet's own recipe (independent of the checkpoint's, so adding or retuning it does
    not rebuild the checkpoint)."""
    text = json.dumps({"controlnet": 1, "seed": seed, "config": controlnet_config(),
                       "zero_conv_gain": CONTROLNET_ZERO_CONV_GAIN,
                       "hint_std": CONTROLNET_HINT_STD, "hint_init": "uniform, bias N(0, 0.01), "
                       "rescaled to std 1 on a reference image", "dtype": "fp16"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main(forge_dir, seed: int = 0, fp16: bool = False, force: bool = False, lora: bool = True,
         taesd: bool = True, controlnet: bool = True) -> dict[str, Path]:
    """Build (or keep, when already built with the same recipe) the tiny files; return their paths."""
    forge_dir = Path(forge_dir).resolve()
    flavor = forge_flavor(forge_dir)  # Forge 2 or Forge Classic: the same files for both
    if flavor == "forge2" and not (forge_dir / "repositories" / "huggingface_guess" / "huggingface_guess").is_dir():
        raise SystemExit(f"{forge_dir}/repositories/huggingface_guess is missing")
    dtype_name = "fp16" if fp16 else "fp8_e4m3fn"
    want = recipe(seed, dtype_name)
    want_controlnet = controlnet_recipe(seed)
    ckpt_path = forge_dir / "models" / "Stable-diffusion" / CHECKPOINT_NAME
    lora_path = forge_dir / "models" / "Lora" / LORA_NAME
    paths = {"checkpoint": ckpt_path}
    if lora:
        paths["lora"] = lora_path
    taesd_dir = forge_dir / "models" / "VAE-taesd"
    stamp = taesd_dir / "tiny_forge_models.recipe"
    if taesd:
        paths["taesd_decoder"] = taesd_dir / "taesd_decoder.pth"
        paths["taesd_encoder"] = taesd_dir / "taesd_encoder.pth"
    controlnet_path = forge_dir / "models" / "ControlNet" / CONTROLNET_NAME
    if controlnet:
        paths["controlnet"] = controlnet_path

    def recipe_of(path: Path) -> str:
        return want_controlnet if path == controlnet_path else want

    def up_to_date(path: Path) -> bool:
        if path.suffix == ".pth":  # the TAESD files: a stamp file beside them holds the recipe
            return path.is_file() and stamp.is_file() and stamp.read_text().strip() == want
        meta = read_safetensors_metadata(path) if path.is_file() else None
        return bool(meta) and meta.get("tiny_forge_models.recipe") == recipe_of(path)

    if not force and all(up_to_date(p) for p in paths.values()):
        for kind, path in paths.items():
            log(f"{kind}: {path} is up to date (recipe {recipe_of(path)}); --force rebuilds")
        return paths
    # The checkpoint (and the LoRA, which is drawn from its shapes) only when one of them is stale.
    need_checkpoint = force or not up_to_date(ckpt_path) or (lora and not up_to_date(lora_path))

    t0 = time.time()
    import torch
    _ST_DTYPES.update({torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
                       torch.int64: "I64", torch.uint8: "U8"})
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    host = forge_host(forge_dir)
    te_vae_dtype = torch.float16 if fp16 else torch.float8_e4m3fn
    if need_checkpoint:
        build_checkpoint_and_lora(host, seed, force, lora, want, dtype_name, te_vae_dtype, ckpt_path,
                                  lora_path, up_to_date)
    else:
        log(f"checkpoint: {ckpt_path} is up to date" + (f", lora: {lora_path} too" if lora else ""))
    if controlnet and (force or not up_to_date(controlnet_path)):
        cn_tensors = build_controlnet_tensors(seed, host)
        cn_config = check_controlnet(cn_tensors, host)
        cn_meta = {
            "tiny_forge_models.recipe": want_controlnet,
            "tiny_forge_models.note": "random weights (zero convs not zero), for tests only; SD 1.5 ControlNet "
                                      "layout (control_model.*) matching the tiny UNet, 3 hint channels",
            "modelspec.architecture": "stable-diffusion-v1/controlnet",
            "modelspec.title": "tiny-sd15-controlnet (random)",
        }
        controlnet_path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(controlnet_path, cn_tensors, cn_meta)
        n_params = sum(v.numel() for v in cn_tensors.values())
        n_zero_convs = len({k for k in cn_tensors if k.startswith("control_model.zero_convs.")}) // 2
        log(f"controlnet: {controlnet_path} ({controlnet_path.stat().st_size / 1e6:.1f} MB, "
            f"sha256 {sha256_file(controlnet_path)[:12]}; {n_params / 1e6:.1f} M params, fp16; detected "
            f"channel_mult {cn_config['channel_mult']}, transformer_depth {cn_config['transformer_depth']}, "
            f"hint_channels {cn_config['hint_channels']}, {n_zero_convs} zero convs + middle_block_out)")
    elif controlnet:
        log(f"controlnet: {controlnet_path} is up to date")
    vae_approx = forge_dir / "models" / "VAE-approx" / "model.pt"
    if flavor == "reforge" and not vae_approx.is_file():  # kept when present (a real one, or ours)
        vae_approx.parent.mkdir(parents=True, exist_ok=True)
        save_torch_deterministic(vae_approx, vae_approx_state_dict(seed))
        log(f"vae-approx: {vae_approx} (random 'Approx NN' live-preview net; reForge would download it)")
    if taesd:
        taesd_dir.mkdir(parents=True, exist_ok=True)
        for name, sd in taesd_state_dicts(seed).items():
            save_torch_deterministic(taesd_dir / name, sd)
        stamp.write_text(want + "\n")
        log(f"taesd: {taesd_dir}/taesd_{{de,en}}coder.pth (random TAESD for the 'TAESD' VAE/preview settings)")
    log(f"built in {time.time() - t0:.1f} s")
    return paths


def build_checkpoint_and_lora(host, seed, force, lora, want, dtype_name, te_vae_dtype, ckpt_path,
                              lora_path, up_to_date) -> None:
    tensors = build_checkpoint_tensors(host, seed, te_vae_dtype)
    guess = check_detection(tensors, host)
    check_rebuild(tensors, guess, host)
    counts = {}
    for k, v in tensors.items():
        part = k.split(".")[0]
        counts[part] = counts.get(part, 0) + v.numel()
    metadata = {
        "tiny_forge_models.recipe": want,
        "tiny_forge_models.note": "random weights, for tests only; SD 1.5 layout (UNet 2 levels at SD 1.5 widths, "
                                  f"full SD 1.5 VAE and CLIP-L text encoder stored as {dtype_name})",
        "modelspec.architecture": "stable-diffusion-v1",
        "modelspec.title": "tiny-sd15 (random)",
    }
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    if force or not up_to_date(ckpt_path):
        write_safetensors(ckpt_path, tensors, metadata)
        log(f"checkpoint: {ckpt_path} ({ckpt_path.stat().st_size / 1e6:.1f} MB, sha256 {sha256_file(ckpt_path)[:12]}; "
            + ", ".join(f"{k} {v / 1e6:.1f} M params" for k, v in counts.items()) + ")")
    else:
        log(f"checkpoint: {ckpt_path} is up to date")
    log(f"detected by {host.detector} as {guess.name}: channel_mult {guess.unet_config['channel_mult']}, "
        f"num_res_blocks {guess.unet_config['num_res_blocks']}, transformer_depth {guess.unet_config['transformer_depth']}")

    if lora:
        lora_tensors, targets = build_lora_tensors(tensors, guess, seed, host)
        lora_meta = {
            "tiny_forge_models.recipe": want,
            "ss_base_model_version": "sd_v1",
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(LORA_RANK),
            "ss_network_alpha": str(LORA_ALPHA),
            "ss_sd_model_name": CHECKPOINT_NAME,
            "modelspec.architecture": "stable-diffusion-v1/lora",
        }
        lora_path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(lora_path, lora_tensors, lora_meta)
        n_unet = sum(1 for n, _ in targets if n.startswith("lora_unet_"))
        log(f"lora: {lora_path} ({lora_path.stat().st_size / 1e3:.0f} kB, sha256 {sha256_file(lora_path)[:12]}; "
            f"{len(targets)} modules: {n_unet} UNet, {len(targets) - n_unet} text encoder; "
            f"rank {LORA_RANK}, alpha {LORA_ALPHA:g})")


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("forge_dir_pos", nargs="?", help="the Forge checkout (same as --forge-dir)")
    parser.add_argument("--forge-dir", default=os.environ.get("FORGE_DIR"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fp16", action="store_true", help="store the VAE and text encoder as fp16 (default fp8_e4m3fn)")
    parser.add_argument("--no-lora", action="store_true")
    parser.add_argument("--no-taesd", action="store_true", help="do not write models/VAE-taesd/taesd_{de,en}coder.pth")
    parser.add_argument("--controlnet", action=argparse.BooleanOptionalAction, default=True,
                        help="write models/ControlNet/tiny-sd15-controlnet.safetensors (default: on)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the files are up to date")
    args = parser.parse_args(argv)
    forge_dir = args.forge_dir_pos or args.forge_dir
    if not forge_dir:
        parser.error("give the Forge checkout (argument, --forge-dir or FORGE_DIR)")
    main(forge_dir, seed=args.seed, fp16=args.fp16, force=args.force, lora=not args.no_lora, taesd=not args.no_taesd,
         controlnet=args.controlnet)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
