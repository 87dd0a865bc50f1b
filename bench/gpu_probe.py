"""Where a UNet step's time goes on this GPU, in a minute: the card's matrix rate at the start
and the end (is it throttled?), one SD1.5-size UNet step (CFG batch of 2) eager, per SDPA
backend, with cuDNN's autotuner, channels-last, before and after a LoRA is loaded (off and on),
a whole txt2img call's steps (wall against kernel time), compiled without CUDA graphs
(inductor's kernels alone) or the engine's fast path (`--fast`), and the kernels that take the
time. Not a test.

    python bench/gpu_probe.py --size 512x768 --out probe.json
    .venv/bin/python bench/gpu_probe.py --device cpu --tiny --size 64x64 --reps 2   # a CPU trial
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_gpu import sd15_pipeline  # noqa: E402

from lib_multipass.engines.base import GenerateRequest  # noqa: E402
from lib_multipass.engines.diffusers import DiffusersEngine  # noqa: E402
from lib_multipass.tiny_models import LORA_NAME, build_pipeline, write_lora  # noqa: E402


def timed_ms(device: str, fn: Callable[[], Any], reps: int) -> float:
    """Median milliseconds of `fn` over `reps` calls after two warm-ups (CUDA events on a GPU)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        if device.startswith("cuda"):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            started = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - started))
    return sorted(times)[len(times) // 2]


def matmul_tflops(device: str) -> float:
    """bf16 8192^3 products (a 512^3 trial on CPU): the card's arithmetic ceiling right now."""
    n = 8192 if device.startswith("cuda") else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / timed_ms(device, lambda: a @ b, 10) / 1e9


def top_kernels(device: str, fn: Callable[[], Any], rows: int = 14) -> list[dict[str, Any]]:
    """The kernels of three calls of `fn`, by device time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    fn()
    with profile(activities=activities) as prof:
        for _ in range(3):
            fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_type.name == ("CUDA" if device.startswith("cuda") else "CPU")]
    key = "self_device_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events) or 1.0
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [{"kernel": e.key[:110], "ms_per_call": getattr(e, key) / 3000, "share": getattr(e, key) / total,
             "count_per_call": e.count / 3} for e in events[:rows]]


def pipeline_step(engine: DiffusersEngine, device: str, size: str, steps: int) -> dict[str, Any]:
    """A whole txt2img call (dpm++2m_karras, CFG 7) per step: the wall time against the kernels'
    time, and its kernels, so what the pipeline adds around the UNet shows."""
    width, height = (int(v) for v in size.split("x"))
    request = GenerateRequest("a forest at dawn", "", (), 1, steps, 7.0, "dpm++2m_karras", width, height)
    wall = timed_ms(device, lambda: engine.txt2img(request), 2) / steps
    kernels = top_kernels(device, lambda: engine.txt2img(request), rows=12)
    busy = sum(k["ms_per_call"] for k in kernels) / max(sum(k["share"] for k in kernels), 1e-9)
    return {"wall_ms_per_step": wall, "kernel_ms_per_step": busy / steps,
            "kernels_per_step": [{**k, "ms_per_call": k["ms_per_call"] / steps,
                                  "count_per_call": k["count_per_call"] / steps} for k in kernels]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--size", default="512x768")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--pipeline-steps", type=int, default=8, help="steps of the profiled txt2img call (0: none)")
    parser.add_argument("--fast", action="store_true", help="then the pipeline step on the engine's fast path")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile-mode", default="default")
    parser.add_argument("--inductor", default="conv_1x1_as_mm=1,coordinate_descent_tuning=1,epilogue_fusion=0",
                        help="torch._inductor.config settings (diffusers' advice)")
    parser.add_argument("--out", type=Path, default=Path("gpu_probe.json"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device, reps = args.device, args.reps
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                              "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "size": args.size}

    def note(key: str, value: Any) -> None:
        report[key] = value
        print(f"{key}: {json.dumps(value)}", flush=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    note("matmul_tflops_start", matmul_tflops(device))
    root = Path(tempfile.mkdtemp())
    pipe = build_pipeline(root / "sd") if args.tiny else sd15_pipeline(root / "sd", device)
    write_lora(root / "loras" / f"{LORA_NAME}.safetensors", pipe, rank=16, scale=0.02)
    pipe = pipe.to(device, dtype)
    unet = pipe.unet
    width, height = (int(v) for v in args.size.split("x"))
    generator = torch.Generator(device="cpu").manual_seed(0)
    latents = torch.randn(2, unet.config.in_channels, height // 8, width // 8, generator=generator).to(device, dtype)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator).to(device, dtype)
    timestep = torch.tensor(500, device=device)

    def step() -> Any:
        return unet(latents, timestep, encoder_hidden_states=context).sample

    steps: dict[str, float] = {"eager": timed_ms(device, step, reps)}
    if device.startswith("cuda"):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
            try:
                with sdpa_kernel(backend):
                    steps[f"sdpa {backend.name}"] = timed_ms(device, step, reps)
            except RuntimeError as err:
                steps[f"sdpa {backend.name}"] = str(err)[:80]  # type: ignore[assignment]
        torch.backends.cudnn.benchmark = True
        steps["cudnn.benchmark"] = timed_ms(device, step, reps)
    unet.to(memory_format=torch.channels_last)
    steps["channels-last"] = timed_ms(device, step, reps)
    note("step_ms", steps)
    note("kernels, channels-last eager", top_kernels(device, step))

    engine = DiffusersEngine(pipe, root / "loras")
    if args.pipeline_steps:
        note("pipeline step, no LoRA", pipeline_step(engine, device, args.size, args.pipeline_steps))
    engine._load({LORA_NAME: root / "loras" / f"{LORA_NAME}.safetensors"})
    engine.loras.apply({})
    lora = {"LoRA loaded, off": timed_ms(device, step, reps)}
    engine.loras.apply({engine.adapters[LORA_NAME]: 1.0})
    lora["LoRA on (1.0)"] = timed_ms(device, step, reps)
    note("step_ms_lora", lora)
    note("kernels, LoRA on", top_kernels(device, step, rows=8))
    if args.pipeline_steps:
        engine.loras.apply({})
        note("pipeline step, LoRA loaded, off", pipeline_step(engine, device, args.size, args.pipeline_steps))

    if args.fast and args.pipeline_steps:
        started = time.perf_counter()
        engine.enable_fast_path()
        pipeline_step(engine, device, args.size, 1)  # compiles
        note("fast path compile_s", time.perf_counter() - started)
        note("pipeline step, fast path, LoRA loaded, off", pipeline_step(engine, device, args.size, args.pipeline_steps))
    elif args.compile:
        import torch._inductor.config as inductor

        for setting in filter(None, args.inductor.split(",")):
            key, value = setting.split("=")
            setattr(inductor, key, type(getattr(inductor, key))(int(value)))
        engine.loras.make_static()
        started = time.perf_counter()
        compiled = torch.compile(unet, mode=args.compile_mode, dynamic=False)
        compiled(latents, timestep, encoder_hidden_states=context)
        note("compile_s", time.perf_counter() - started)
        note(f"step_ms_compiled ({args.compile_mode}, {args.inductor}; LoRA on, static)", timed_ms(
            device, lambda: compiled(latents, timestep, encoder_hidden_states=context), reps))
    note("matmul_tflops_end", matmul_tflops(device))


if __name__ == "__main__":
    main()
