"""Mask stage time vs one diffusion step at the same image size (target: mask < one step).

Random weights at real sizes: CLIPSeg rd64 (ViT-B/16 at 352 px), the subject detectors
(OWL-ViT B/32 at 768 px, OWLv2 B/16 at 960 px: the whole image and 9 tiles of it, one
batch), an SD 1.x UNet step with CFG (batch 2). Also mediapipe's offline person segmenter.
Not a test.

    .venv/bin/python bench/bench_masks.py [--sizes 512,1024]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from timing import best  # noqa: E402

from lib_multipass.masks import masking  # noqa: E402
from lib_multipass.masks.detector import SubjectDetector  # noqa: E402
from lib_multipass.masks.segmenters import ClipSegSegmenter, SelfieSegmenter  # noqa: E402
from lib_multipass.options import MultipassOptions  # noqa: E402
from lib_multipass.plan import mask_spec  # noqa: E402
from lib_multipass.tiny_models import write_tokenizer  # noqa: E402


def real_size_clipseg(folder: Path) -> ClipSegSegmenter:
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    vocab = write_tokenizer(folder)
    config = CLIPSegConfig(text_config={"vocab_size": vocab, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1,
                                        "pad_token_id": vocab - 1},
                           vision_config={"image_size": 352, "patch_size": 16}, reduce_dim=64)
    CLIPSegForImageSegmentation(config).save_pretrained(folder)
    processor = ViTImageProcessor(size={"height": 352, "width": 352})
    CLIPSegProcessor(image_processor=processor, tokenizer=CLIPTokenizer.from_pretrained(folder)).save_pretrained(folder)
    return ClipSegSegmenter(str(folder))


def real_size_detector(folder: Path, version: int) -> SubjectDetector:
    """OWL-ViT base/32 (1) or OWLv2 base/16 (2) at their released sizes, random weights."""
    import transformers
    from transformers import CLIPTokenizer

    kind = "OwlViT" if version == 1 else "Owlv2"
    vocab = write_tokenizer(folder, max_length=16)
    config = getattr(transformers, f"{kind}Config")(
        text_config={"vocab_size": vocab, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1},
        vision_config={"image_size": 768, "patch_size": 32} if version == 1 else {"image_size": 960, "patch_size": 16})
    getattr(transformers, f"{kind}ForObjectDetection")(config).save_pretrained(folder)
    image_class = getattr(transformers, f"{kind}ImageProcessorPil", None) or getattr(transformers, f"{kind}ImageProcessor")
    side = 768 if version == 1 else 960
    sized = {"size": {"height": side, "width": side}, **({"crop_size": {"height": side, "width": side}} if version == 1 else {})}
    getattr(transformers, f"{kind}Processor")(image_processor=image_class(**sized),
                                              tokenizer=CLIPTokenizer.from_pretrained(folder)).save_pretrained(folder)
    return SubjectDetector(str(folder))


def unet_step(size: int):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).eval()
    latents = torch.randn(2, 4, size // 8, size // 8)
    text = torch.randn(2, 77, 768)
    return lambda: unet(latents, 500, encoder_hidden_states=text)


def mask_stage(segmenter, image: Image.Image, terms, negative) -> None:
    spec = mask_spec(MultipassOptions.from_dict({"mask_dilate": "2%", "mask_blur": 8}), None)
    prob = segmenter.probabilities(image, terms)
    neg = segmenter.probabilities(image, negative) if negative else None
    mask = masking.pass_mask(masking.subject_mask(prob, neg, spec), spec)
    masking.feather(mask, spec.blur)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="512,1024")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        clipseg = real_size_clipseg(Path(tmp) / "clipseg")
        clipseg.load()
        selfie = SelfieSegmenter()
        detectors = {f"detector {name}": real_size_detector(Path(tmp) / name, version)
                     for name, version in (("OWL-ViT B/32 (whole + 9 tiles)", 1), ("OWLv2 B/16 (one view)", 2))}
        params = sum(p.numel() for p in clipseg._model.parameters()) / 1e6
        print(f"torch threads {torch.get_num_threads()}; CLIPSeg {params:.0f} M params")
        for size in (int(s) for s in args.sizes.split(",")):
            image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            step = best(unet_step(size), repeat=2)
            rows = {
                "clipseg person": best(lambda image=image: mask_stage(clipseg, image, ["person"], ())),
                "clipseg person - clothes": best(lambda image=image: mask_stage(clipseg, image, ["person"], ["clothes"])),
                "selfie (offline) person": best(lambda image=image: mask_stage(selfie, image, ["person"], ())),
                **{name: best(lambda image=image, d=d: d.detect(image, ["person"])) for name, d in detectors.items()},
            }
            print(f"{size}x{size}: one SD 1.x UNet step with CFG {step:.2f}s")
            for name, seconds in rows.items():
                print(f"  mask stage, {name}: {seconds:.3f}s = {seconds / step:.2f} steps (target < 1)")


if __name__ == "__main__":
    main()
