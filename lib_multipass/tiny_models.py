"""Tiny random-weight models built from configs, for the demo, the tests and the benchmarks.

No download: a tokenizer from a generated vocabulary, a CLIP text encoder, UNet, VAE, a
CLIPSeg segmenter and a kohya-format LoRA for that UNet, written as the files the real
loading code reads (a diffusers folder, a LoRA `.safetensors`, a CLIPSeg folder).
The images they make are noise: the weights are random.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TEXT_DIM = 32
LORA_NAME = "ohwx_man"


@dataclass(frozen=True)
class TinyModels:
    checkpoint: Path  # a diffusers folder
    lora_dir: Path  # holds f"{LORA_NAME}.safetensors"
    segmenter: Path  # a CLIPSeg folder
    controlnet: Path  # a ControlNet folder for that UNet
    sam: Path  # a SAM folder (mask edges)
    detector: Path  # an OWL-ViT folder (subject boxes)


def _bytes_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of CLIP's byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


def write_tokenizer(folder: Path, max_length: int = 77) -> int:
    """A CLIP tokenizer whose vocabulary covers every byte: never an unknown token. OWL's
    text encoder reads `max_length` 16."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    merges = [("o", "h"), ("oh", "w"), ("ohw", "x</w>"), ("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>")]
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {"model_max_length": max_length, "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(vocab)


def _text_config(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )


def build_pipeline(folder: Path, seed: int = 0, unet_channels: tuple[int, ...] = (32, 64)):
    """A random SD 1.x-shaped pipeline saved as a diffusers folder; returns the pipeline."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab_size = write_tokenizer(folder / "tokenizer")
    torch.manual_seed(seed)
    blocks = len(unet_channels)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1),
        cross_attention_dim=TEXT_DIM, attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8, sample_size=64,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(vocab_size)))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)  # type: ignore[attr-defined]
    return pipe


def build_sdxl_pipeline(folder: Path, seed: int = 0):
    """A random SDXL-shaped pipeline (two text encoders, pooled and size conditioning, the
    1024 px native size) saved as a diffusers folder; returns the pipeline."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    vocab_size = write_tokenizer(folder / "tokenizer")
    write_tokenizer(folder / "tokenizer_2")
    torch.manual_seed(seed)
    time_dim, second = 8, 48  # the second encoder wider than the first, as in SDXL (single files tell them apart so)
    unet = UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_DIM + second, attention_head_dim=8, addition_embed_type="text_time",
        addition_time_embed_dim=time_dim, projection_class_embeddings_input_dim=second + 6 * time_dim,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=8, sample_size=64, scaling_factor=0.13025,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**_text_config(vocab_size))),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(
            **{**_text_config(vocab_size), "hidden_size": second, "intermediate_size": 64}, projection_dim=second)),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"), unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(folder)  # type: ignore[attr-defined]
    return pipe


def write_lora(path: Path, pipe, seed: int = 1, rank: int = 4, scale: float = 0.5) -> None:
    """A kohya-format LoRA (`lora_unet_...`, `lora_te_...`, `.alpha`) for every attention projection."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    targets = [("lora_unet", name, mod) for name, mod in pipe.unet.named_modules()
               if name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or name.endswith("to_out.0")]
    targets += [("lora_te", "text_model." + name.removeprefix("text_model."), mod)
                for name, mod in pipe.text_encoder.named_modules()
                if name.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")]
    for prefix, name, module in targets:
        key = f"{prefix}_{name.replace('.', '_')}"
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * scale
        tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * scale
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def write_esrgan(path: Path, seed: int = 4, features: int = 16, grow: int = 32) -> None:
    """A random 4x Real-ESRGAN (RRDB) in the key layout of RealESRGAN_x4plus.pth (BasicSR's
    names), one block of 16 features instead of 23 of 64 (the growth stays 32, as loaders assume)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    shapes = {"conv_first": (features, 3), "conv_body": (features, features), "conv_up1": (features, features),
              "conv_up2": (features, features), "conv_hr": (features, features), "conv_last": (3, features)}
    for rdb in (1, 2, 3):
        for conv in range(1, 6):
            shapes[f"body.0.rdb{rdb}.conv{conv}"] = (features if conv == 5 else grow, features + (conv - 1) * grow)
    tensors = {}
    for name, (out, inp) in shapes.items():
        tensors[f"{name}.weight"] = torch.randn(out, inp, 3, 3, generator=generator) * (0.5 / (inp * 9) ** 0.5)
        tensors[f"{name}.bias"] = torch.zeros(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))


def build_controlnet(folder: Path, pipe, seed: int = 2) -> None:
    """A ControlNet made from the tiny UNet; its zero convolutions get random weights so the
    hint visibly reaches the UNet (real ControlNets learn them; zeros would ignore the hint)."""
    import torch
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(8, 16, 32, 32))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                      controlnet.controlnet_cond_embedding.conv_out]
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.3)
    controlnet.save_pretrained(folder)


def build_sam(folder: Path, seed: int = 0) -> None:
    """A random SAM (the architecture of facebook/sam-vit-*, 0.2 M parameters) and its processor."""
    import torch
    from transformers import SamConfig, SamModel, SamProcessor

    try:  # transformers 5 without torchvision: the PIL one
        from transformers import SamImageProcessorPil as ImageProcessor  # type: ignore[attr-defined]
    except ImportError:
        from transformers import SamImageProcessor as ImageProcessor  # type: ignore[assignment]
    torch.manual_seed(seed)
    config = SamConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, output_channels=32,
                           global_attn_indexes=[1], window_size=4, num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=32))
    save_safetensors(SamModel(config), folder)
    SamProcessor(image_processor=ImageProcessor()).save_pretrained(folder)


def build_detector(folder: Path, seed: int = 0, version: int = 1) -> None:
    """A random OWL-ViT (`version` 1) or OWLv2 (2) with its processor (64 px input, 16 px patches)."""
    import torch
    import transformers
    from transformers import CLIPTokenizer

    kind = "OwlViT" if version == 1 else "Owlv2"
    config_class, model_class = getattr(transformers, f"{kind}Config"), getattr(transformers, f"{kind}ForObjectDetection")
    processor_class = getattr(transformers, f"{kind}Processor")
    # transformers 5 without torchvision: the PIL image processor
    image_class = getattr(transformers, f"{kind}ImageProcessorPil", None) or getattr(transformers, f"{kind}ImageProcessor")
    vocab_size = write_tokenizer(folder, max_length=16)
    torch.manual_seed(seed)
    vision = dict(hidden_size=TEXT_DIM, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=64, patch_size=16)
    text = {**_text_config(vocab_size), "max_position_embeddings": 16}
    config = config_class(text_config=text, vision_config=vision, projection_dim=TEXT_DIM)
    save_safetensors(model_class(config), folder)
    sized = {"size": {"height": 64, "width": 64}}
    if version == 1:
        sized["crop_size"] = {"height": 64, "width": 64}
    processor_class(image_processor=image_class(**sized), tokenizer=CLIPTokenizer.from_pretrained(folder)).save_pretrained(folder)


def build_segmenter(folder: Path, seed: int = 0) -> None:
    """A random CLIPSeg model and processor saved as a folder (64 px input)."""
    import torch
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    vocab_size = write_tokenizer(folder)
    torch.manual_seed(seed)
    text = _text_config(vocab_size)
    vision = dict(hidden_size=TEXT_DIM, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=64, patch_size=16)
    config = CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=TEXT_DIM, extract_layers=(1,),
                           reduce_dim=16, decoder_num_attention_heads=2, decoder_intermediate_size=32)
    model = CLIPSegForImageSegmentation(config)
    with torch.no_grad():  # flat within a patch: random masks come out as blobs, not pixel noise
        up: Any = model.decoder.transposed_convolution
        up.weight.copy_(15 * up.weight.mean(dim=(2, 3), keepdim=True).expand_as(up.weight))
    save_safetensors(model, folder)
    image_processor = ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def save_safetensors(model, folder: Path) -> None:
    """Weights as safetensors under any transformers (4.x defaults to a pickle, which the
    WebUI's safe unpickler rejects when a recent torch wrote it)."""
    import transformers

    legacy = int(transformers.__version__.split(".")[0]) < 5
    model.save_pretrained(folder, **({"safe_serialization": True} if legacy else {}))


def build_tiny_models(root: Path, seed: int = 0) -> TinyModels:
    """Build (once; later calls reuse the files) every tiny model under `root`."""
    root = Path(root)
    models = TinyModels(root / "tiny-sd", root / "loras", root / "tiny-clipseg", root / "tiny-controlnet",
                        root / "tiny-sam", root / "tiny-owlvit")
    done = root / ".complete-v5"  # bumped when the set of tiny models changes
    if done.exists():
        return models
    pipe = build_pipeline(models.checkpoint, seed)
    write_lora(models.lora_dir / f"{LORA_NAME}.safetensors", pipe, seed + 1)
    build_segmenter(models.segmenter, seed)
    build_controlnet(models.controlnet, pipe, seed + 2)
    build_sam(models.sam, seed + 3)
    build_detector(models.detector, seed + 4)
    done.write_text("ok\n")
    return models


def write_tfjs_graph(folder: Path, name: str, nodes: list[dict], weights: dict[str, Any],
                     half: frozenset[str] = frozenset()) -> Path:
    """A TensorFlow.js graph model as `name`.json and `name`.bin: `nodes` the graph's ops (Const
    nodes are added for `weights`, numpy arrays), the ones named in `half` stored as float16."""
    import numpy as np

    specs, data = [], []
    for key, value in weights.items():
        value = np.asarray(value)
        spec: dict[str, Any] = {"name": key, "shape": list(value.shape),
                                "dtype": "int32" if value.dtype.kind in "iu" else "float32"}
        stored = value.astype(np.int32 if spec["dtype"] == "int32" else np.float32)
        if key in half:
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            stored = stored.astype(np.float16)
        specs.append(spec)
        data.append(stored.tobytes())
    consts = [{"name": key, "op": "Const", "attr": {}} for key in weights]
    model = {"format": "graph-model", "modelTopology": {"node": consts + nodes},
             "weightsManifest": [{"paths": [f"{name}.bin"], "weights": specs}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.bin").write_bytes(b"".join(data))
    (folder / f"{name}.json").write_text(json.dumps(model))
    return folder / f"{name}.json"


def build_nanodet(folder: Path, seed: int = 0) -> Path:
    """A random graph with NanoDet-m's interface (masks/nanodet.py): input `input_1` (1, 3, 416,
    416), outputs `Identity:0`..`Identity_2:0` class scores (cells, 80) of strides 8, 16, 32 and
    `Identity_3:0`..`Identity_5:0` their side distributions (cells, 44); one strided
    convolution a stride, float16 weights as the published model's. Its boxes are noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    size, weights = 416, {"perm": np.array([0, 2, 3, 1]), "splits": np.array([80, 44]), "axis": np.array(3),
                                    "shift": np.array(-2.0, np.float32)}  # most cells score under 0.35
    nodes: list[dict] = [{"name": "input_1", "op": "Placeholder", "attr": {}},
                         {"name": "nhwc", "op": "Transpose", "input": ["input_1", "perm"], "attr": {}}]
    for i, stride in enumerate((8, 16, 32)):
        cells = (size // stride) ** 2
        weights[f"kernel{i}"] = rng.normal(0, 0.5, (stride, stride, 3, 124)) / stride
        weights[f"scores_shape{i}"], weights[f"sides_shape{i}"] = np.array([1, cells, 80]), np.array([1, cells, 44])
        strides = {"list": {"i": ["1", str(stride), str(stride), "1"]}}
        nodes += [
            {"name": f"conv{i}", "op": "Conv2D", "input": ["nhwc", f"kernel{i}"],
             "attr": {"strides": strides, "padding": {"s": "VkFMSUQ="}, "data_format": {"s": "TkhXQw=="}}},
            {"name": f"split{i}", "op": "SplitV", "input": [f"conv{i}", "splits", "axis"], "attr": {}},
            {"name": f"shifted{i}", "op": "AddV2", "input": [f"split{i}", "shift"], "attr": {}},
            {"name": f"sigmoid{i}", "op": "Sigmoid", "input": [f"shifted{i}"], "attr": {}},
            {"name": f"scores{i}", "op": "Reshape", "input": [f"sigmoid{i}", f"scores_shape{i}"], "attr": {}},
            {"name": f"sides{i}", "op": "Reshape", "input": [f"split{i}:1", f"sides_shape{i}"], "attr": {}},
            {"name": "Identity" + (f"_{i}" if i else ""), "op": "Identity", "input": [f"scores{i}"], "attr": {}},
            {"name": f"Identity_{3 + i}", "op": "Identity", "input": [f"sides{i}"], "attr": {}},
        ]
    return write_tfjs_graph(folder, "nanodet", nodes, weights, half=frozenset(k for k in weights if "kernel" in k))
