"""The standalone engine on a GPU: a single pass, a whole multi-pass job, and the same diffusion
calls made plainly; eager and the fast path (`DiffusersEngine.enable_fast_path`); per-stage
times (text encoder, UNet, VAE, LoRA switching, masks and paste) and peak memory. Not a test.

SD1.5-size random weights are built in place (no download), fp16 on CUDA; one rank-16 LoRA on
every attention projection; a user mask of about 25 % of the image (no segmenter). Each figure
is the minimum of `--runs` after a warm-up, timed with CUDA synchronisation. Results are
printed and written as JSON after each size, so a run cut short keeps what it measured.

    # a trial on CPU (tiny model):
    .venv/bin/python bench/bench_gpu.py --device cpu --tiny --sizes 64x64 --steps 2 --runs 1 --modes eager
    # on a GPU:
    python bench/bench_gpu.py --sizes 512x768,1024x1024 --steps 30 --out gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from lib_multipass.engines.base import GenerateRequest  # noqa: E402
from lib_multipass.engines.diffusers import DiffusersEngine, make_scheduler  # noqa: E402
from lib_multipass.faces.detect import make_face_detector  # noqa: E402
from lib_multipass.options import MultipassOptions  # noqa: E402
from lib_multipass.plan import Generation, make_plan  # noqa: E402
from lib_multipass.prompt import parse  # noqa: E402
from lib_multipass.runner import run  # noqa: E402
from lib_multipass.tiny_models import LORA_NAME, build_pipeline, write_lora, write_tokenizer  # noqa: E402

PROMPT = f"a forest at dawn, wide shot BREAK photo, detailed BREAK ohwx man <lora:{LORA_NAME}:1>"


def sd15_pipeline(folder: Path, device: str):
    """A StableDiffusionPipeline of SD 1.5's sizes (UNet 860 M, VAE, CLIP ViT-L/14 text) with
    random weights, made on the device (seconds, not the minute a CPU build takes)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = write_tokenizer(folder / "tokenizer")
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2, norm_num_groups=32, sample_size=512)
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=vocab, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def clock(device: str, fn) -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


class Stages:
    """Adds up the synchronised time of the text encoder, UNet and VAE decoder forward calls,
    and of the engine's LoRA switching, over one call; and the time outside the pipelines'
    calls (our prompt encoding, masks, paste, LoRA switching: the multi-pass overhead)."""

    def __init__(self, engine: DiffusersEngine, device: str):
        self.engine, self.device, self.on, self.times = engine, device, False, defaultdict(float)
        self._started = 0.0
        self.outside = 0.0

    def run(self, fn) -> float:
        """`fn()` timed as a whole, its stages added up (hooks attached for this call only: on a
        compiled UNet they would change its graph)."""
        pipe, engine = self.engine.pipe, self.engine
        handles = []
        for name, module in (("text encoder", pipe.text_encoder), ("unet", pipe.unet), ("vae", pipe.vae.decoder)):
            handles.append(module.register_forward_pre_hook(lambda *_: self._start()))
            handles.append(module.register_forward_hook(lambda *_, n=name: self._stop(n)))
        switch = engine.use_loras

        def timed_switch(loras):
            self.times["lora switching"] += clock(self.device, lambda: switch(loras))

        engine.use_loras = timed_switch  # type: ignore[method-assign]
        classes = {type(p) for p in engine._pipes.values()} | {type(engine.inpaint_pipe)}
        calls = {cls: cls.__call__ for cls in classes}
        inside = [0.0]

        def timed_call(pipeline, *args, **kwargs):
            started = time.perf_counter()
            try:
                return calls[type(pipeline)](pipeline, *args, **kwargs)
            finally:
                sync(self.device)
                inside[0] += time.perf_counter() - started

        for cls in classes:
            cls.__call__ = timed_call  # type: ignore[method-assign]
        self.times.clear()
        self.on = True
        try:
            total = clock(self.device, fn)
            self.outside = total - inside[0]
            return total
        finally:
            self.on = False
            engine.use_loras = switch  # type: ignore[method-assign]
            for cls, call in calls.items():
                cls.__call__ = call  # type: ignore[method-assign]
            for handle in handles:
                handle.remove()

    def _start(self) -> None:
        if self.on:
            sync(self.device)
            self._started = time.perf_counter()

    def _stop(self, name: str) -> None:
        if self.on:
            sync(self.device)
            self.times[name] += time.perf_counter() - self._started


def mask_file(folder: Path, width: int, height: int) -> Path:
    """A standing figure: an ellipse covering about 25 % of the image."""
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).ellipse((width * 0.3, height * 0.1, width * 0.7, height * 0.9), fill=255)
    path = folder / f"mask_{width}x{height}.png"
    mask.save(path)
    return path


def plain_calls(engine: DiffusersEngine, plan) -> None:
    """The job's diffusion calls with nothing around them (LoRA left as the person pass has it)."""
    base, person = plan.base, plan.persons[0]
    pipe, inpaint = engine.pipe, engine.inpaint_pipe
    pipe.scheduler = make_scheduler(base.sampler, pipe.scheduler.config)
    image = pipe(prompt=base.prompt, negative_prompt=base.negative or None, num_inference_steps=base.steps,
                 guidance_scale=base.cfg_scale, width=base.width, height=base.height,
                 generator=torch.Generator().manual_seed(base.seed)).images[0]
    inpaint.scheduler = make_scheduler(person.sampler, pipe.scheduler.config)
    inpaint(prompt=person.prompt, negative_prompt=person.negative or None, image=image,
            mask_image=Image.new("L", image.size, 255), strength=person.denoise, num_inference_steps=person.steps,
            guidance_scale=person.cfg_scale, width=person.width, height=person.height,
            generator=torch.Generator().manual_seed(person.seed))


def switch_cost(engine: DiffusersEngine, device: str, peft: bool, rounds: int = 5) -> float:
    """The LoRA switches of one job (off for the base, on for the person), peft's way or ours."""
    adapter = engine.adapters[LORA_NAME]

    def once() -> None:
        if peft:
            engine.pipe.disable_lora()
            engine.pipe.enable_lora()
            engine.pipe.set_adapters([adapter], adapter_weights=[1.0])
        else:
            engine.loras.apply({})
            engine.loras.apply({adapter: 1.0})

    cost = min(clock(device, once) for _ in range(rounds))
    engine.loras.state = None  # set anew by the next pass
    return cost


def step_times(engine: DiffusersEngine, plan, device: str) -> dict[str, float]:
    """The median time between two steps of the base and of the person pass in one job (not
    synchronised: in a steady state the queue is full and the interval is the step's cost), and
    a single pass's timeline: call to first step, last step to the synchronised end. With CUDA
    graphs the CPU runs ahead of the GPU, so there the intervals are the CPU's and the end
    holds the GPU's backlog."""
    stamps: list[tuple[str, float]] = []
    on_step = engine._on_step

    def stamped(pipeline, step, timestep, tensors):
        stamps.append((type(pipeline).__name__, time.perf_counter()))
        return on_step(pipeline, step, timestep, tensors)

    engine._on_step = stamped  # type: ignore[method-assign]
    try:
        run(plan, engine)
        gaps: dict[str, list[float]] = defaultdict(list)
        for (name, before), (after_name, after) in zip(stamps, stamps[1:]):
            if name == after_name:
                gaps[name].append(after - before)
        result = {name: 1000 * sorted(values)[len(values) // 2] for name, values in gaps.items()}
        stamps.clear()
        sync(device)
        started = time.perf_counter()
        engine.txt2img(GenerateRequest.from_pass(plan.base))
        sync(device)
        ended = time.perf_counter()
    finally:
        engine._on_step = on_step  # type: ignore[method-assign]
    return result | {"single: call to first step": 1000 * (stamps[0][1] - started),
                     "single: first to last step": 1000 * (stamps[-1][1] - stamps[0][1]),
                     "single: last step to synchronised end": 1000 * (ended - stamps[-1][1])}


def ab_rounds(engine: DiffusersEngine, plan, device: str, rounds: int) -> dict[str, Any]:
    """Eager and fast in turn, round by round, in one process (the compiled calls switched off
    and on; the weights stay channels-last): a GPU whose speed drifts over a run biases
    sequential figures, not these paired ratios."""
    modules = (engine.pipe.unet, engine.pipe.vae.encoder, engine.pipe.vae.decoder)
    compiled = {module: module._compiled_call_impl for module in modules}
    request = GenerateRequest.from_pass(plan.base)
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(rounds):
        for name, fn in (("single", lambda: engine.txt2img(request)), ("multi", lambda: run(plan, engine))):
            for module in modules:
                module._compiled_call_impl = None
            eager = clock(device, fn)
            for module, impl in compiled.items():
                module._compiled_call_impl = impl
            pairs[name].append((eager, clock(device, fn)))
    return {name: {"eager_s, fast_s": values,
                   "median speedup": sorted(e / f for e, f in values)[len(values) // 2]} for name, values in pairs.items()}


def graphs() -> int:
    """Graphs dynamo compiled so far in this process."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def measure(engine: DiffusersEngine, plan, device: str, runs: int, stages: bool, warmups: int) -> dict[str, Any]:
    """Single pass, multi-pass job, plain calls (min of `runs` after `warmups` rounds: the first
    compiles on the fast path), stages, memory, and graphs compiled after the warm-up (LoRA
    switching must add none)."""
    base_request = GenerateRequest.from_pass(plan.base)
    warm = [{"single": clock(device, lambda: engine.txt2img(base_request)),
             "multi": clock(device, lambda: run(plan, engine)),
             "plain": clock(device, lambda: plain_calls(engine, plan))} for _ in range(warmups)]
    compiled = graphs()
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        times["single"].append(clock(device, lambda: engine.txt2img(base_request)))
        times["multi"].append(clock(device, lambda: run(plan, engine)))
        times["plain"].append(clock(device, lambda: plain_calls(engine, plan)))
    best = {name: min(values) for name, values in times.items()}
    memory: dict[str, float] = {}
    if device.startswith("cuda"):
        for name, fn in (("single", lambda: engine.txt2img(base_request)), ("multi", lambda: run(plan, engine))):
            torch.cuda.reset_peak_memory_stats()
            fn()
            memory[name] = torch.cuda.max_memory_allocated() / 2**30
    parts: dict[str, float] = {}
    if stages:
        parts["switching, peft's set_adapters (x2 a job)"] = switch_cost(engine, device, peft=True)
        parts["switching, ours (x2 a job)"] = switch_cost(engine, device, peft=False)
        timer = Stages(engine, device)
        job = timer.run(lambda: run(plan, engine))
        parts |= {**timer.times, "rest (masks, paste, schedulers, python)": job - sum(timer.times.values()),
                  "outside the pipeline calls": timer.outside}
    steps = step_times(engine, plan, device)
    return {
        "first_runs_s": warm, "graphs_after_warmup": compiled, "graphs_compiled_later": graphs() - compiled,
        "step_ms": steps, "images": [np.asarray(engine.txt2img(base_request)),
                                     np.asarray(engine.txt2img(GenerateRequest.from_pass(plan.persons[0])))],
        "single_s": best["single"], "multi_s": best["multi"], "plain_s": best["plain"],
        "multi_over_single": best["multi"] / best["single"],
        "overhead_pct": 100 * (best["multi"] - best["plain"]) / best["plain"],
        "stages_s": parts,
        "peak_gib": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny model (a CPU trial of the script)")
    parser.add_argument("--sizes", default="512x768")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--modes", default="eager,fast", help="eager, fast (compiled UNet, channels-last)")
    parser.add_argument("--fast-sizes", default="", help="sizes of the fast path (default: --sizes)")
    parser.add_argument("--compile-mode", default="reduce-overhead")
    parser.add_argument("--stages", action=argparse.BooleanOptionalAction, default=True,
                        help="per-stage times of the eager job (hooks with synchronisation: slower)")
    parser.add_argument("--ab-rounds", type=int, default=3, help="eager/fast rounds in turn after the fast figures")
    parser.add_argument("--inductor", default="", help="torch._inductor.config settings for the fast path, as "
                        "conv_1x1_as_mm=1,coordinate_descent_tuning=1,epilogue_fusion=0 (diffusers' advice)")
    parser.add_argument("--out", type=Path, default=Path("bench_gpu.json"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                              "torch": torch.__version__, "steps": args.steps, "results": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        pipe = build_pipeline(root / "sd") if args.tiny else sd15_pipeline(root / "sd", args.device)
        write_lora(root / "loras" / f"{LORA_NAME}.safetensors", pipe, rank=16, scale=0.02)
        pipe = pipe.to(args.device, dtype)
        pipe.set_progress_bar_config(disable=True)
        report["build_s"] = time.perf_counter() - started
        print(f"{report['device']}, torch {torch.__version__}, model built in {report['build_s']:.0f}s", flush=True)
        engine = DiffusersEngine(pipe, root / "loras", face_detector=make_face_detector("haar"))
        eager_images: dict[str, np.ndarray] = {}
        for mode in args.modes.split(","):
            if mode == "fast":
                import torch._inductor.config as inductor

                for setting in filter(None, args.inductor.split(",")):
                    key, value = setting.split("=")
                    setattr(inductor, key, type(getattr(inductor, key))(int(value)))
                report["inductor"] = args.inductor
                engine.enable_fast_path(args.compile_mode)
            for size in (args.sizes if mode == "eager" else args.fast_sizes or args.sizes).split(","):
                width, height = (int(v) for v in size.split("x"))
                options = MultipassOptions.from_dict({"mask_image": str(mask_file(root, width, height)),
                                                      "mask_dilate": 0, "mask_min_area": 0})
                generation = Generation(seed=1, steps=args.steps, width=width, height=height, sampler="dpm++2m_karras")
                plan = make_plan(parse(PROMPT), options, generation)
                result = measure(engine, plan, args.device, args.runs, stages=mode == "eager" and args.stages,
                                 warmups=1 if mode == "eager" else 2)
                images = np.stack(result.pop("images")).astype(np.int16)  # the base pass, a LoRA pass
                if mode == "eager":
                    eager_images[size] = images
                elif size in eager_images:
                    eager = report["results"][f"eager {size}"]
                    difference = np.abs(images - eager_images[size]).reshape(2, -1)
                    result["vs_eager"] = {"max_level_difference (base, LoRA)": difference.max(axis=1).tolist(),
                                          "mean_level_difference (base, LoRA)": difference.mean(axis=1).tolist(),
                                          "single_speedup": eager["single_s"] / result["single_s"],
                                          "multi_speedup": eager["multi_s"] / result["multi_s"]}
                if mode == "fast" and args.ab_rounds:
                    result["a/b, eager channels-last vs fast"] = ab_rounds(engine, plan, args.device, args.ab_rounds)
                report["results"][f"{mode} {size}"] = result
                print(f"{mode} {size}: single {result['single_s']:.3f}s  multi {result['multi_s']:.3f}s  plain "
                      f"{result['plain_s']:.3f}s  multi/single {result['multi_over_single']:.2f}  overhead "
                      f"{result['overhead_pct']:+.1f}%  first runs {json.dumps(result['first_runs_s'])}  "
                      f"graphs {result['graphs_after_warmup']} (+{result['graphs_compiled_later']} later)  "
                      f"step ms {json.dumps({k: round(v, 2) for k, v in result['step_ms'].items()})}  "
                      f"stages {json.dumps({k: round(v, 4) for k, v in result['stages_s'].items()})}  "
                      f"peak GiB {json.dumps(result['peak_gib'])}  vs eager {json.dumps(result.get('vs_eager'))}  "
                      f"a/b {json.dumps(result.get('a/b, eager channels-last vs fast'))}",
                      flush=True)
                args.out.write_text(json.dumps(report, indent=2) + "\n")

if __name__ == "__main__":
    main()
