"""The offline demo: the README's first example, end to end, on tiny random-weight models."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DEMO_PROMPT = (
    "(medium shot) of a male model wearing hiking clothes, standing in a dense forest\n"
    "BREAK photorealistic and highly detailed\n"
    "BREAK ohwx man wearing hiking clothes and shoes <lora:ohwx_man:1.0> --mask_dilate 8"
)
DEMO_NEGATIVE = "blurry, lowres"
log = logging.getLogger(__name__)
NOTICE = """\
The images are noise: the demo's models have random weights (built in seconds, no download).
The passes, masks, LoRA switching and paste-back are the real ones. On a real checkpoint:
  python -m lib_multipass run --checkpoint model.safetensors --lora-dir loras/ \\
      --prompt "scene BREAK common BREAK ohwx man <lora:name:1>" --out out/
(a single-file checkpoint needs the hub, or --config with a diffusers folder of its type)"""


def overview(base: Image.Image, alpha: np.ndarray, final: Image.Image) -> Image.Image:
    """base | mask overlay (red) | final, labelled."""
    tint = np.asarray(base.convert("RGB"), np.float32)
    tint = tint * (1 - 0.6 * alpha[..., None]) + np.array([255.0, 0, 0]) * 0.6 * alpha[..., None]
    panels = [base.convert("RGB"), Image.fromarray(np.rint(tint).astype(np.uint8)), final.convert("RGB")]
    width, height = base.size
    sheet = Image.new("RGB", (3 * width, height + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (panel, label) in enumerate(zip(panels, ("base", "mask", "final"))):
        sheet.paste(panel, (i * width, 16))
        draw.text((i * width + 4, 2), label, fill="black")
    return sheet


def run_demo(out: Path, cache: Path) -> int:
    from ..engines.diffusers import DiffusersEngine, load_pipeline
    from ..masks.segmenters import ClipSegSegmenter
    from ..tiny_models import build_tiny_models
    from .job import add_job_arguments, plan_from_args, run_job

    log.info("building tiny random models in %s (once)", cache)
    models = build_tiny_models(cache)
    parser = argparse.ArgumentParser()
    add_job_arguments(parser)
    args = parser.parse_args(["--prompt", DEMO_PROMPT, "--negative", DEMO_NEGATIVE, "--seed", "7", "--steps", "8",
                              "--width", "256", "--height", "256", "--sampler", "euler_a",
                              "--options", '{"mask_person_check": false}'])  # random weights paint no body
    args.out = out
    _, plan = plan_from_args(args)
    pipe = load_pipeline(str(models.checkpoint), device="cpu")
    engine = DiffusersEngine(pipe, models.lora_dir, ClipSegSegmenter(str(models.segmenter)))
    code = run_job(args, plan, engine, "tiny-sd")
    base, final = Image.open(out / "base.png"), Image.open(out / "final.png")
    alpha = np.asarray(Image.open(out / "mask.png"), np.float32) / 255.0
    overview(base, alpha, final).save(out / "overview.png")
    log.info("%s", NOTICE)
    return code
