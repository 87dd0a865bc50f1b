"""Multi-pass overhead: a whole job's wall time / the same diffusion steps as plain pipeline calls.

Random-weight UNet of realistic width (SD 1.x layout) so the steps dominate, as they do
with real weights. Prints per-stage times and the ratio (target <= 1.05). Not a test.

    .venv/bin/python bench/bench_overhead.py [--channels 320,640,1280,1280] [--size 256] [--steps 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lib_multipass.engines.diffusers import DiffusersEngine, load_pipeline, make_scheduler  # noqa: E402
from lib_multipass.masks.segmenters import ClipSegSegmenter  # noqa: E402
from lib_multipass.options import MultipassOptions  # noqa: E402
from lib_multipass.plan import Generation, make_plan  # noqa: E402
from lib_multipass.prompt import parse  # noqa: E402
from lib_multipass.runner import run  # noqa: E402
from lib_multipass.tiny_models import LORA_NAME, build_pipeline, build_segmenter, write_lora  # noqa: E402

PROMPT = f"a forest at dawn BREAK photo BREAK ohwx man <lora:{LORA_NAME}:1> --mask_threshold 0.5"


class Timed:
    """Wraps an engine and adds up the time of each of its calls."""

    def __init__(self, engine: DiffusersEngine):
        self.engine = engine
        self.times: dict[str, float] = defaultdict(float)

    def __getattr__(self, name):
        method = getattr(self.engine, name)
        if name not in ("txt2img", "inpaint", "segment"):
            return method

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.times[name] += time.perf_counter() - started

        return timed


def plain_steps(engine: DiffusersEngine, plan) -> dict[str, float]:
    """The same diffusion calls with nothing around them: txt2img, then in-paint of the whole image."""
    from PIL import Image

    base, person = plan.base, plan.persons[0]
    generator = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    started = time.perf_counter()
    engine.pipe.disable_lora()
    engine.pipe.scheduler = make_scheduler(base.sampler, engine.pipe.scheduler.config)
    image = engine.pipe(prompt=base.prompt, negative_prompt=base.negative or None, num_inference_steps=base.steps,
                        guidance_scale=base.cfg_scale, width=base.width, height=base.height,
                        generator=generator(base.seed)).images[0]
    times = {"txt2img": time.perf_counter() - started}
    started = time.perf_counter()
    engine.pipe.enable_lora()
    engine.pipe.set_adapters([engine.adapters[LORA_NAME]], [1.0])
    pipe = engine.inpaint_pipe
    pipe.scheduler = make_scheduler(person.sampler, engine.pipe.scheduler.config)
    pipe(prompt=person.prompt, negative_prompt=person.negative or None, image=image,
         mask_image=Image.new("L", image.size, 255), strength=person.denoise, num_inference_steps=person.steps,
         guidance_scale=person.cfg_scale, width=person.width, height=person.height, generator=generator(person.seed))
    times["inpaint"] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", default="320,640,1280,1280")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    channels = tuple(int(c) for c in args.channels.split(","))
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pipe = build_pipeline(root / "sd", unet_channels=channels)
        write_lora(root / "loras" / f"{LORA_NAME}.safetensors", pipe)
        build_segmenter(root / "clipseg")
        engine = DiffusersEngine(load_pipeline(str(root / "sd"), device="cpu"), root / "loras",
                                 ClipSegSegmenter(str(root / "clipseg")))
        params = sum(p.numel() for p in engine.pipe.unet.parameters()) / 1e6
        generation = Generation(seed=1, steps=args.steps, width=args.size, height=args.size, sampler="euler_a")
        options = MultipassOptions.from_dict({"mask_min_area": 0})
        plan = make_plan(parse(PROMPT), options, generation)
        print(f"UNet {channels} ({params:.0f} M params), {args.size}x{args.size}, {args.steps} steps, "
              f"person denoise {plan.persons[0].denoise}, torch threads {torch.get_num_threads()}")
        timed = Timed(engine)
        started = time.perf_counter()
        first = run(plan, timed)
        print(f"first job (loads the LoRA): {time.perf_counter() - started:.2f}s, mask "
              f"{(first.alphas['person_1'] > 0).mean():.0%} of the image")
        totals, plains, stages = [], [], []
        for repeat in range(args.repeat):
            if repeat % 2:  # alternate the order, so neither side always runs second
                plains.append(plain_steps(engine, plan))
            timed.times.clear()
            started = time.perf_counter()
            run(plan, timed)
            totals.append(time.perf_counter() - started)
            stages.append(dict(timed.times))
            if not repeat % 2:
                plains.append(plain_steps(engine, plan))
        # minimum over repeats: the least disturbed run of each (this machine is shared)
        total, plain = min(totals), min(sum(p.values()) for p in plains)
        stage = {k: min(s[k] for s in stages) for k in stages[0]}
        bare = {k: min(p[k] for p in plains) for k in plains[0]}
        print("multipass stages (min): " + ", ".join(f"{k} {v:.2f}s" for k, v in stage.items()))
        print("plain calls (min): " + ", ".join(f"{k} {v:.2f}s" for k, v in bare.items()))
        print(f"multipass job {total:.2f}s  plain pipeline calls {plain:.2f}s  "
              f"overhead {total - plain:+.2f}s  ratio {total / plain:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
