"""Finishing at 1024x1024: each step's time against one SD 1.x UNet step at 512x512, and the
peak memory of a 4x tiled upscale by image size (it should grow by the image buffers only,
not by the network's activations). Random weights of real sizes; not a test.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_finish.py [--sizes 256,512,1024] [--blocks 6]

The upscaler is Real-ESRGAN's RRDB at 64 features and `--blocks` blocks (6: the
architecture of RealESRGAN_x4plus_anime_6B; 23: RealESRGAN_x4plus, ~4x slower).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from timing import best  # noqa: E402

from lib_multipass.finish import film_grain, grade  # noqa: E402
from lib_multipass.masks.colour import matched  # noqa: E402


def photo(side: int) -> Image.Image:
    noise = np.random.default_rng(0).random((side // 8, side // 8, 3)) * 255
    return Image.fromarray(noise.astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)


def unet_step_seconds() -> float:
    """One SD 1.x-size UNet step (random weights) at 512x512 with classifier-free guidance."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                attention_head_dim=8, sample_size=64).eval()
    latents, text = torch.randn(2, 4, 64, 64), torch.randn(2, 77, 768)
    with torch.no_grad():
        return best(lambda: unet(latents, 500, text), repeat=2)


def write_rrdb(path: Path, blocks: int) -> None:
    """A random 4x RRDB in Real-ESRGAN's key layout (64 features, growth 32)."""
    import torch
    from safetensors.torch import save_file

    shapes = {"conv_first": (64, 3), "conv_body": (64, 64), "conv_up1": (64, 64), "conv_up2": (64, 64),
              "conv_hr": (64, 64), "conv_last": (3, 64)}
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for conv in range(1, 6):
                shapes[f"body.{block}.rdb{rdb}.conv{conv}"] = (64 if conv == 5 else 32, 64 + (conv - 1) * 32)
    tensors = {}
    for name, (out, inp) in shapes.items():
        tensors[f"{name}.weight"] = torch.randn(out, inp, 3, 3) * (0.2 / (inp * 9) ** 0.5)
        tensors[f"{name}.bias"] = torch.zeros(out)
    save_file(tensors, str(path))


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def upscale_child(weights: str, side: int) -> None:
    """In a fresh process: peak resident memory before and after a tiled 4x of side x side."""
    from lib_multipass.image_models import load_image_model, run_tiled

    model = load_image_model(weights)
    image = photo(side)
    before = peak_mib()
    started = time.perf_counter()
    out = run_tiled(model, image)
    seconds = time.perf_counter() - started
    print(json.dumps({"side": side, "out": out.size[0], "seconds": seconds, "before_mib": before,
                      "peak_mib": peak_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        upscale_child(args.child[0], int(args.child[1]))
        return
    image = photo(1024)
    base = photo(1024).rotate(3)
    mask = np.zeros((1024, 1024), bool)
    mask[200:900, 300:800] = True
    steps = {
        "grading (Film Portra)": best(lambda: grade(image, "Film Portra", 1.0)),
        "film grain 0.3": best(lambda: film_grain(image, 0.3, 1)),
        "colour match of a 1024 px crop": best(
            lambda: matched(np.asarray(base), np.asarray(image), (0, 0, 1024, 1024), mask, 16)),
    }
    step = unet_step_seconds()
    print(f"one SD 1.x UNet step at 512x512 (CFG batch 2): {step:.2f} s")
    for name, seconds in steps.items():
        print(f"{name} at 1024x1024: {seconds:.3f} s = {seconds / step:.4f} of a UNet step")
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "rrdb.safetensors"
        write_rrdb(weights, args.blocks)
        print(f"4x tiled upscale, RRDB {args.blocks} blocks x 64 features, tiles 256 px + 24 px context:")
        for side in map(int, args.sizes.split(",")):
            found = subprocess.run([sys.executable, __file__, "--child", str(weights), str(side)], check=True,
                                   capture_output=True, text=True).stdout.strip().splitlines()[-1]
            row = json.loads(found)
            print(f"  {side}px -> {row['out']}px: {row['seconds']:.1f} s, peak {row['peak_mib']:.0f} MiB "
                  f"(model loaded: {row['before_mib']:.0f} MiB; output image {row['out'] ** 2 * 3 / 2 ** 20:.0f} MiB "
                  f"as bytes, {row['out'] ** 2 * 12 / 2 ** 20:.0f} MiB as floats)")


if __name__ == "__main__":
    main()
